package dashboards

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/schema"
)

// The KV-cache dashboard shows the hit ratio by tenant and prompt family, evictions and idle time before
// eviction, under the names the prometheus exporter gives the canonical metrics (the end-to-end test runs
// every expression through a real Prometheus).
func TestKVCacheDashboard(t *testing.T) {
	sch, err := schema.Default()
	require.NoError(t, err)
	set, err := Set(sch)
	require.NoError(t, err)
	panels := map[string][]Expr{}
	for _, d := range set {
		if d.UID == "servescope-kv-cache" {
			for _, p := range d.Panels {
				panels[p.Title] = p.Exprs
			}
		}
	}
	require.NotEmpty(t, panels)
	assert.Equal(t, []Expr{{
		`sum by (llm_tenant, llm_prompt_family) (rate(llm_tenant_prompt_tokens_total{llm_prompt_cache="cached"}[5m])) / ` +
			`sum by (llm_tenant, llm_prompt_family) (rate(llm_tenant_prompt_tokens_total{llm_prompt_cache=~"cached|uncached"}[5m]))`,
		"{{llm_tenant}} / {{llm_prompt_family}}",
	}}, panels["Prefix-cache hit ratio by tenant and prompt family"])
	assert.Equal(t, []Expr{{"sum by (instance) (rate(llm_kv_cache_block_idle_before_evict_seconds_count[5m]))", "{{instance}}"}},
		panels["KV-cache block evictions (sampled blocks)"])
	assert.Equal(t, []Expr{
		{"histogram_quantile(0.5, sum by (le, instance) (rate(llm_kv_cache_block_idle_before_evict_seconds_bucket[5m])))", "p50 {{instance}}"},
		{"histogram_quantile(0.95, sum by (le, instance) (rate(llm_kv_cache_block_idle_before_evict_seconds_bucket[5m])))", "p95 {{instance}}"},
	}, panels["Idle time before eviction p50 / p95"])
	for _, kept := range []string{"KV-cache utilization by replica", "Prefix-cache hit ratio", "Cached share of prompt tokens by tenant", "Preemptions"} {
		assert.Contains(t, panels, kept)
	}
}
