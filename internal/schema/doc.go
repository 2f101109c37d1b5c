package schema

// Paths of the generated files, relative to the repository root.
const (
	GeneratedGoPath  = "internal/schema/names.go"
	GeneratedDocPath = "docs/schema.md"
)
