package ncclreceiver

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
)

func TestConfigFromYAML(t *testing.T) {
	cm := confmap.NewFromStringMap(map[string]any{
		"include": []any{"/var/log/nccl/*.log"},
		"storage": "file_storage",
		"skew":    map[string]any{"clocks": "synchronized", "min_skew": "100us"},
		"replicas": []any{map[string]any{
			"files": "/var/log/nccl/a/*", "service_instance_id": "a:8000", "engine": "vllm",
			"tensor_parallel_size": 4, "pipeline_parallel_size": 2, "all_reduce": "nccl",
		}},
	})
	cfg := createDefaultConfig().(*Config)
	require.NoError(t, cm.Unmarshal(cfg))
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "file_storage", cfg.Storage.String())
	assert.Equal(t, "synchronized", cfg.Skew.Clocks)
	assert.Equal(t, 2, cfg.Skew.Wait, "defaults survive a partial skew block")
	assert.Equal(t, 8, cfg.Replicas[0].sizes().World())
	assert.False(t, cfg.Replicas[0].customAllReduce())
}

func TestConfigRejects(t *testing.T) {
	cases := map[string]struct {
		edit func(*Config)
		want string
	}{
		"no include":        {func(c *Config) { c.Include = nil }, "include"},
		"bad glob":          {func(c *Config) { c.Include = []string{"["} }, "pattern"},
		"tiny budget":       {func(c *Config) { c.MaxBytesPerInterval = 10 }, "max_bytes_per_interval"},
		"start_at":          {func(c *Config) { c.StartAt = "middle" }, "start_at"},
		"clocks":            {func(c *Config) { c.Skew.Clocks = "ntp" }, "skew.clocks"},
		"replica unmatched": {func(c *Config) { c.Replicas = []ReplicaRule{{ServiceInstanceID: "a"}} }, "set files, host or both"},
		"replica id":        {func(c *Config) { c.Replicas = []ReplicaRule{{Host: "x"}} }, "service_instance_id"},
		"replica host re":   {func(c *Config) { c.Replicas = []ReplicaRule{{Host: "(", ServiceInstanceID: "a"}} }, "host"},
		"replica engine":    {func(c *Config) { c.Replicas = []ReplicaRule{{Host: "x", ServiceInstanceID: "a", Engine: "nope"}} }, "unknown engine"},
		"replica sizes": {func(c *Config) {
			c.Replicas = []ReplicaRule{{Host: "x", ServiceInstanceID: "a", TensorParallelSize: -2}}
		}, "negative"},
		"all_reduce": {func(c *Config) { c.Replicas = []ReplicaRule{{Host: "x", ServiceInstanceID: "a", AllReduce: "maybe"}} }, "all_reduce"},
	}
	for name, c := range cases {
		cfg := createDefaultConfig().(*Config)
		cfg.Include = []string{filepath.Join("x", "*.log")}
		c.edit(cfg)
		err := cfg.Validate()
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

func TestAllReduceAuto(t *testing.T) {
	for _, c := range []struct {
		engine string
		tp     int
		want   bool
	}{{"vllm", 2, true}, {"sglang", 8, true}, {"tensorrt_llm", 4, true}, {"vllm", 1, false}, {"llama_cpp", 4, false}, {"", 4, false}} {
		r := ReplicaRule{Engine: c.engine, TensorParallelSize: c.tp}
		assert.Equal(t, c.want, r.customAllReduce(), "%s tp=%d", c.engine, c.tp)
	}
}
