package main

// Not generated: the builder owns the other files of this package. This file gives the distribution an
// embedded default configuration, so `otelcol-servescope` with no flags starts a useful sidecar.

import (
	"os"
	"strings"
	"testing"

	"github.com/servescope/servescope/config"
)

func init() {
	if testing.Testing() { // a test binary's flags are not the collector's
		return
	}
	os.Args = withDefaultConfig(os.Args)
}

// withDefaultConfig adds the embedded default as a `yaml:` config URI when the collector is run (not a
// subcommand such as `components` or `validate`) without any --config flag.
func withDefaultConfig(args []string) []string {
	for _, a := range args[1:] {
		if a == "--config" || a == "-c" || strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-c=") {
			return args
		}
		if !strings.HasPrefix(a, "-") { // a subcommand or a flag's value: leave the command line alone
			return args
		}
		if a == "-h" || a == "--help" || a == "-v" || a == "--version" {
			return args
		}
	}
	return append(append([]string{}, args...), "--config=yaml:"+config.Default)
}
