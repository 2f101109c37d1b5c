package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The builder manifests (the full distribution's and the slim sidecar's) name the module versions the
// distributions are built from; this repository is one Go module, so go.mod must pin exactly those versions
// or a manifest would be lying.
func TestManifestVersionsArePinnedInGoMod(t *testing.T) {
	goMod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	required := map[string]string{}
	for _, line := range strings.Split(string(goMod), "\n") {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(fields) >= 2 && strings.Contains(fields[0], ".") {
			required[fields[0]] = fields[1]
		}
	}
	for manifest, least := range map[string]int{"../../builder-config.yaml": 20, "../../builder-config-sidecar.yaml": 8} {
		checked := 0
		for _, module := range manifestModules(t, manifest) {
			fields := strings.Fields(module)
			module, version := fields[0], fields[1]
			if module == "github.com/servescope/servescope" {
				continue
			}
			assert.Equal(t, version, required[module], "%s: %s and go.mod disagree", module, manifest)
			checked++
		}
		assert.Greater(t, checked, least, manifest)
	}
}

// The sidecar distribution is a subset of the full one: nothing it runs is missing from the full binary, so
// every sidecar configuration runs on either.
func TestSidecarManifestIsASubsetOfTheFullOne(t *testing.T) {
	full := map[string]bool{}
	for _, m := range manifestImports(t, "../../builder-config.yaml") {
		full[m] = true
	}
	for _, m := range manifestImports(t, "../../builder-config-sidecar.yaml") {
		assert.True(t, full[m], "%s is in the sidecar manifest, not in the full one", m)
	}
}

func readManifest(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var manifest map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &manifest))
	return manifest
}

var manifestKinds = []string{"receivers", "processors", "connectors", "exporters", "extensions", "providers"}

// manifestModules are the gomod entries of a manifest ("module version").
func manifestModules(t *testing.T, path string) []string {
	t.Helper()
	manifest := readManifest(t, path)
	var out []string
	for _, kind := range manifestKinds {
		for _, entry := range manifest[kind].([]any) {
			out = append(out, entry.(map[string]any)["gomod"].(string))
		}
	}
	return out
}

// manifestImports are the components of a manifest by kind and import path (the module's, with its
// version, where the entry names no import).
func manifestImports(t *testing.T, path string) []string {
	t.Helper()
	manifest := readManifest(t, path)
	var out []string
	for _, kind := range manifestKinds {
		for _, entry := range manifest[kind].([]any) {
			e := entry.(map[string]any)
			id, _ := e["import"].(string)
			if id == "" {
				id = e["gomod"].(string)
			}
			out = append(out, kind+" "+id)
		}
	}
	return out
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
