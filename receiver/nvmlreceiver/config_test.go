package nvmlreceiver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/servescope/servescope/receiver/nvmlreceiver/internal/metadata"
)

func load(t *testing.T, name string) (*Config, error) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	id := component.NewID(metadata.Type)
	if name != "" {
		id = component.NewIDWithName(metadata.Type, name)
	}
	sub, err := cm.Sub(id.String())
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg, confmap.Validate(cfg)
}

func TestConfig(t *testing.T) {
	cfg, err := load(t, "")
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, cfg.CollectionInterval)
	assert.Equal(t, "/proc", cfg.ProcRoot)
	assert.False(t, cfg.Required)

	_, err = load(t, "replicas")
	assert.ErrorContains(t, err, `replicas[1].engine: unknown engine "sglang_not_known"`)

	_, err = load(t, "bad")
	require.Error(t, err)
	for _, want := range []string{
		"collection_interval: 100ms is shorter",
		"replicas[0]: set at least one of process_name, port, cgroup_contains",
		"replicas[1].process_name: error parsing regexp",
		"replicas[1].port: 70000 is not a TCP port",
		"replicas[1].service_instance_id: required",
	} {
		assert.ErrorContains(t, err, want)
	}
}
