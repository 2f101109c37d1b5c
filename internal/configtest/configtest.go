// Package configtest checks a component's configuration the way the collector loads it: each named section
// of a testdata file unmarshalled over the defaults, then validated.
package configtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

// Sections loads path and checks every section named in want: "" means it must validate, anything else is
// a substring the validation error must contain.
func Sections[C any](t *testing.T, path string, defaults func() C, want map[string]string) {
	t.Helper()
	cm, err := confmaptest.LoadConf(path)
	require.NoError(t, err)
	for name, wantErr := range want {
		t.Run(name, func(t *testing.T) {
			cfg := defaults()
			sub, err := cm.Sub(name)
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, wantErr)
			}
		})
	}
}
