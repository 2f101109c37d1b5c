package promnames

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/schema"
)

// The names below were read from the prometheus exporter's /metrics page (collector v0.165), serving the
// canonical metrics of a vLLM capture and llm_signals' output.
func TestNamesTheExporterWrites(t *testing.T) {
	sch, err := schema.Default()
	require.NoError(t, err)
	for canonical, exposed := range map[string]string{
		schema.MetricLLMSchedulerRequestsWaiting:  "llm_scheduler_requests_waiting",
		schema.MetricLLMKVCacheUtilization:        "llm_kv_cache_utilization_ratio",
		schema.MetricLLMPrefixCacheHitRatio:       "llm_prefix_cache_hit_ratio",
		schema.MetricLLMPrefixCacheQueries:        "llm_prefix_cache_queries_total",
		schema.MetricLLMComputeEstimatedReadBytes: "llm_compute_estimated_read_bytes_total",
		schema.MetricLLMCostGPUTime:               "llm_cost_gpu_time_seconds_total",
		schema.MetricLLMCostGPUTimeByCategory:     "llm_cost_gpu_time_by_category_seconds_total",
		schema.MetricLLMCostAmount:                "llm_cost_amount_total",
		schema.MetricLLMRequestQueueTime:          "llm_request_queue_time_seconds",
		schema.MetricLLMRequestPromptTokens:       "llm_request_prompt_tokens",
		schema.MetricGenAIServerTimeToFirstToken:  "gen_ai_server_time_to_first_token_seconds",
		schema.MetricLLMReplicaHealthScore:        "llm_replica_health_score_ratio",
		schema.MetricLLMPoolDesiredReplicas:       "llm_pool_desired_replicas",
		schema.MetricLLMEngineUp:                  "llm_engine_up_ratio",
	} {
		m := sch.Metric(canonical)
		require.NotNil(t, m, canonical)
		assert.Equal(t, exposed, Name(m), canonical)
	}
	assert.Equal(t, "service_instance_id", Label(schema.AttrServiceInstanceID))
}
