package llmnormalizeprocessor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// For the captures of the other engines: the scheduler gauges equal the capture's, and every family left
// under an engine prefix is a documented pass-through (the schema maps or explains every family).
func TestNormalizesOtherEngineCaptures(t *testing.T) {
	s := mustSchema(t)
	cases := []struct {
		glob, engine, prefix, waiting, running string
	}{
		{"sglang/*.txt", schema.EngineSglang, "sglang:", "sglang:num_queue_reqs", "sglang:num_running_reqs"},
		{"llamacpp/*.txt", schema.EngineLlamaCpp, "llamacpp:", "llamacpp:requests_deferred", "llamacpp:requests_processing"},
	}
	for _, c := range cases {
		for _, rel := range fixtures.Glob(t, c.glob) {
			t.Run(rel, func(t *testing.T) {
				body := fixtures.Read(t, rel)
				out := normalize(t, &Config{}, enginescrape.ExpositionToMetrics(body, time.Now())).out // engine detected from names
				got := metrics(out)
				for wire, canonical := range map[string]string{c.waiting: schema.MetricLLMSchedulerRequestsWaiting, c.running: schema.MetricLLMSchedulerRequestsRunning} {
					want := fixtures.Samples(body, wire)
					require.NotEmpty(t, want, wire)
					m := single(t, out, canonical)
					require.Equal(t, len(want), m.Gauge().DataPoints().Len(), canonical)
					for i, w := range want {
						assert.Equal(t, w.Value, m.Gauge().DataPoints().At(i).DoubleValue(), canonical)
					}
				}
				for name := range got {
					if strings.HasPrefix(name, c.prefix) {
						assert.NotEmpty(t, s.Engines[c.engine].PassthroughReason(name), "%s is neither mapped nor a documented pass-through", name)
					}
				}
			})
		}
	}
}

func TestSGLangLabelsAndTensorParallelDedup(t *testing.T) {
	body := []byte(`# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="m",pp_rank="0",tp_rank="0",dp_rank="1"} 12
sglang:num_running_reqs{engine_type="unified",model_name="m",pp_rank="0",tp_rank="1",dp_rank="1"} 12
sglang:num_running_reqs{engine_type="unified",model_name="m",pp_rank="0",tp_rank="2",dp_rank="1"} 12
sglang:num_running_reqs{engine_type="unified",model_name="m",pp_rank="0",tp_rank="3",dp_rank="1"} 12
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{model_name="m",le="0.1"} 1
sglang:time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 2
sglang:time_to_first_token_seconds_count{model_name="m"} 2
sglang:time_to_first_token_seconds_sum{model_name="m"} 0.4
`)
	out := normalize(t, &Config{}, enginescrape.ExpositionToMetrics(body, time.Now())).out
	running := single(t, out, schema.MetricLLMSchedulerRequestsRunning)
	require.Equal(t, 1, running.Gauge().DataPoints().Len(), "four TP ranks report one scheduler")
	assert.Equal(t, map[string]any{
		schema.AttrGenAIRequestModel: "m", schema.AttrLLMEngineRole: "unified", schema.AttrLLMParallelTpRank: "0",
		schema.AttrLLMParallelPpRank: "0", schema.AttrLLMEngineIndex: "1",
	}, running.Gauge().DataPoints().At(0).Attributes().AsRaw())
	ttft := single(t, out, schema.MetricGenAIServerTimeToFirstToken)
	assert.Equal(t, pmetric.MetricTypeHistogram, ttft.Type())
	assert.EqualValues(t, 2, ttft.Histogram().DataPoints().At(0).Count(), "series without tp_rank are kept")
}

// vLLM exposes prefix-cache hit and query counters; llm_normalize derives the ratio SGLang reports directly.
func TestHitRatioDerivedFromCounters(t *testing.T) {
	body := fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt")
	out := normalize(t, &Config{}, enginescrape.ExpositionToMetrics(body, time.Now())).out
	ratio := single(t, out, schema.MetricLLMPrefixCacheHitRatio)
	assert.Equal(t, "1", ratio.Unit())
	require.Equal(t, 1, ratio.Gauge().DataPoints().Len())
	want := fixtures.Sum(body, "vllm:prefix_cache_hits_total") / fixtures.Sum(body, "vllm:prefix_cache_queries_total")
	assert.InDelta(t, want, ratio.Gauge().DataPoints().At(0).DoubleValue(), 1e-12)
	model, _ := ratio.Gauge().DataPoints().At(0).Attributes().Get(schema.AttrGenAIRequestModel)
	assert.Contains(t, model.Str(), "Qwen2.5")

	// SGLang's own ratio is mapped, not derived.
	sg := fixtures.Read(t, "sglang/datadog_sglang_metrics.txt")
	out = normalize(t, &Config{}, enginescrape.ExpositionToMetrics(sg, time.Now())).out
	assert.Equal(t, fixtures.Samples(sg, "sglang:cache_hit_rate")[0].Value,
		single(t, out, schema.MetricLLMPrefixCacheHitRatio).Gauge().DataPoints().At(0).DoubleValue())
}

// Ray Serve's own families map onto serve-level names, and the vLLM families its LLM replicas re-export map
// like vLLM's, with Ray's ReplicaId as the replica.
func TestRayServeAndItsVLLMReplicas(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "..", "receiver", "rayservereceiver", "testdata", "metrics_ray_serve_2.4x.txt"))
	require.NoError(t, err)
	md := enginescrape.ExpositionToMetrics(body, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineRayServe)
	out := normalize(t, &Config{}, md).out

	waiting := single(t, out, schema.MetricLLMSchedulerRequestsWaiting)
	require.Equal(t, 1, waiting.Gauge().DataPoints().Len(), "only the engine's queue; Serve's router queue has its own name")
	attrs := waiting.Gauge().DataPoints().At(0).Attributes().AsRaw()
	assert.Equal(t, "LLMServer#abc12", attrs[schema.AttrServiceInstanceID])
	assert.Equal(t, "qwen-7b", attrs[schema.AttrGenAIRequestModel])

	queued := single(t, out, schema.MetricLLMServeRequestsQueued)
	assert.Equal(t, fixtures.Samples(body, "ray_serve_deployment_queued_queries")[0].Value, queued.Gauge().DataPoints().At(0).DoubleValue())
	healthy := single(t, out, schema.MetricLLMServeReplicaHealthy)
	assert.Equal(t, 2, healthy.Gauge().DataPoints().Len())
	processing := single(t, out, schema.MetricLLMServeProcessingTime)
	assert.Equal(t, "s", processing.Unit())
	assert.InDelta(t, fixtures.Sum(body, "ray_serve_deployment_processing_latency_ms_sum")/1000, processing.Histogram().DataPoints().At(0).Sum(), 1e-9)
	assert.Equal(t, []float64{0.5, 5}, processing.Histogram().DataPoints().At(0).ExplicitBounds().AsRaw())
	dp := processing.Histogram().DataPoints().At(0).Attributes().AsRaw()
	assert.Equal(t, "llm-app", dp[schema.AttrLLMServeApplication])
	assert.Equal(t, "LLMServer#abc12", dp[schema.AttrServiceInstanceID])

	s := mustSchema(t)
	for name := range metrics(out) {
		if strings.HasPrefix(name, "ray_serve_") {
			assert.NotEmpty(t, s.Engines[schema.EngineRayServe].PassthroughReason(name), "%s is neither mapped nor a documented pass-through", name)
		}
	}
}

// Triton's captures: microsecond duration counters become seconds, GPU gauges take the GPU names, and every
// nv_ family is mapped or a documented pass-through.
func TestTritonCaptures(t *testing.T) {
	s := mustSchema(t)
	for _, rel := range fixtures.Glob(t, "triton_trtllm/*.txt") {
		t.Run(rel, func(t *testing.T) {
			body := fixtures.Read(t, rel)
			md := enginescrape.ExpositionToMetrics(body, time.Now())
			md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineTriton)
			out := normalize(t, &Config{}, md).out
			got := metrics(out)
			if want := fixtures.Samples(body, "nv_inference_request_success"); len(want) > 0 {
				assert.Equal(t, fixtures.Sum(body, "nv_inference_request_success"), sumOf(single(t, out, schema.MetricLLMRequestsFinished)))
				duration := single(t, out, schema.MetricLLMRequestsDuration)
				assert.Equal(t, "s", duration.Unit())
				assert.InDelta(t, fixtures.Sum(body, "nv_inference_request_duration_us")/1e6, sumOf(duration), 1e-6)
				model, _ := duration.Sum().DataPoints().At(0).Attributes().Get(schema.AttrGenAIRequestModel)
				assert.NotEmpty(t, model.Str())
			}
			if want := fixtures.Samples(body, "nv_gpu_memory_used_bytes"); len(want) > 0 {
				mem := single(t, out, schema.MetricHwGPUMemoryUsage)
				assert.Equal(t, want[0].Value, mem.Gauge().DataPoints().At(0).DoubleValue())
				id, _ := mem.Gauge().DataPoints().At(0).Attributes().Get(schema.AttrHwID)
				assert.Equal(t, labelValue(want[0].Labels, "gpu_uuid"), id.Str())
			}
			for name := range got {
				if strings.HasPrefix(name, "nv_") {
					assert.NotEmpty(t, s.Engines[schema.EngineTriton].PassthroughReason(name), "%s is neither mapped nor a documented pass-through", name)
				}
			}
		})
	}
}

func sumOf(m pmetric.Metric) float64 {
	var total float64
	for _, dp := range m.Sum().DataPoints().All() {
		total += dp.DoubleValue()
	}
	return total
}
