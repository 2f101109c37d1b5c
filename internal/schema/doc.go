package schema

// Paths of the generated files, relative to the repository root.
const (
	GeneratedGoPath  = "internal/schema/names.go"
	GeneratedDocPath = "docs/schema.md"
	// GeneratedBuildersPath holds the canonical metrics' builders (package internal/canonical).
	GeneratedBuildersPath = "internal/canonical/metrics.go"
)
