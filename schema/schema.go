// Package schema carries servescope's canonical schema as data. It only embeds canonical.yaml;
// internal/schema is the one Go view of it (parsing, validation, lookup tables).
package schema

import _ "embed"

// YAML is the canonical schema, canonical.yaml, as written.
//
//go:embed canonical.yaml
var YAML []byte
