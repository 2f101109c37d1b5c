// Command gen writes the files generated from schema/canonical.yaml: internal/schema/names.go,
// internal/canonical/metrics.go and docs/schema.md. Run it from the repository root (`make generate`).
package main

import (
	"fmt"
	"os"

	"github.com/servescope/servescope/internal/schema"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "schema gen:", err)
		os.Exit(1)
	}
}

func run() error {
	s, err := schema.Default()
	if err != nil {
		return err
	}
	goSrc, err := schema.RenderGo(s)
	if err != nil {
		return err
	}
	if err := os.WriteFile(schema.GeneratedGoPath, goSrc, 0o644); err != nil {
		return err
	}
	builders, err := schema.RenderBuildersGo(s)
	if err != nil {
		return err
	}
	if err := os.WriteFile(schema.GeneratedBuildersPath, builders, 0o644); err != nil {
		return err
	}
	return os.WriteFile(schema.GeneratedDocPath, schema.RenderMarkdown(s), 0o644)
}
