// Package config holds the collector configurations servescope ships: the embedded default that the
// binary runs when started without --config, and the examples documented in the README.
package config

import _ "embed"

// Default is the configuration used when otelcol-servescope runs without --config.
//
//go:embed default.yaml
var Default string
