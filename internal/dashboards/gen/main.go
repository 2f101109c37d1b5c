// Command gen writes dashboards/*.json and alerts/servescope-rules.yaml from the schema.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/servescope/servescope/internal/dashboards"
	"github.com/servescope/servescope/internal/schema"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	if err := run(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(root string) error {
	sch, err := schema.Default()
	if err != nil {
		return err
	}
	set, err := dashboards.Set(sch)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "dashboards"), 0o755); err != nil {
		return err
	}
	for _, d := range set {
		b, err := dashboards.Grafana(d)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "dashboards", d.UID+".json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "alerts"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "alerts", "servescope-rules.yaml"), dashboards.RulesYAML(dashboards.Rules(sch)), 0o644)
}
