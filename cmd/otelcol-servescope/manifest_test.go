package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The builder manifest names the module versions the distribution is built from; this repository is one
// Go module, so go.mod must pin exactly those versions or the manifest would be lying.
func TestManifestVersionsArePinnedInGoMod(t *testing.T) {
	raw, err := os.ReadFile("../../builder-config.yaml")
	require.NoError(t, err)
	var manifest map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &manifest))
	goMod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	required := map[string]string{}
	for _, line := range strings.Split(string(goMod), "\n") {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(fields) >= 2 && strings.Contains(fields[0], ".") {
			required[fields[0]] = fields[1]
		}
	}
	checked := 0
	for _, kind := range []string{"receivers", "processors", "connectors", "exporters", "extensions", "providers"} {
		for _, entry := range manifest[kind].([]any) {
			fields := strings.Fields(entry.(map[string]any)["gomod"].(string))
			module, version := fields[0], fields[1]
			if module == "github.com/servescope/servescope" {
				continue
			}
			assert.Equal(t, version, required[module], "%s: builder-config.yaml and go.mod disagree", module)
			checked++
		}
	}
	assert.Greater(t, checked, 20)
}

func TestDefaultConfigOnlyWhenNoneGiven(t *testing.T) {
	withDefault := func(args ...string) bool {
		got := withDefaultConfig(append([]string{"otelcol-servescope"}, args...))
		return strings.HasPrefix(got[len(got)-1], "--config=yaml:")
	}
	assert.True(t, withDefault())
	assert.True(t, withDefault("--feature-gates=-foo"))
	assert.False(t, withDefault("--config", "x.yaml"))
	assert.False(t, withDefault("--config=x.yaml"))
	assert.False(t, withDefault("-c", "x.yaml"))
	assert.False(t, withDefault("components"))
	assert.False(t, withDefault("validate", "--config=x.yaml"))
	assert.False(t, withDefault("--version"))
}
