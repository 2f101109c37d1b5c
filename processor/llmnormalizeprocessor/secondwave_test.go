package llmnormalizeprocessor

import (
	"os"
	"path/filepath"
	"strconv"
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

// receiverPage reads a page kept in an engine receiver's own testdata (written from the engine's source
// where no real capture is public; each folder's README.md says which).
func receiverPage(t *testing.T, receiver, file string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "receiver", receiver, "testdata", file))
	require.NoError(t, err)
	return body
}

// The engines of the second wave, each with the engine name its receiver stamps: gauges carry the page's
// values under canonical names, counters its totals, and every family left under the engine's own names is
// a documented pass-through.
func TestNormalizesSecondWaveEngines(t *testing.T) {
	s := mustSchema(t)
	for _, c := range []struct {
		name, engine string
		body         func(t *testing.T) []byte
		// own says whether a family left over is the engine's own (and so must be explained).
		own      func(name string) bool
		gauges   map[string]string // wire family -> canonical gauge
		counters map[string]string // wire family -> canonical counter (compared by total)
	}{
		{
			name: "lmdeploy_v0.16.0", engine: schema.EngineLmdeploy,
			body: func(t *testing.T) []byte { return receiverPage(t, "lmdeployreceiver", "metrics_v0.16.0.txt") },
			own:  func(name string) bool { return strings.HasPrefix(name, "lmdeploy:") },
			gauges: map[string]string{
				"lmdeploy:num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting, "lmdeploy:num_requests_running": schema.MetricLLMSchedulerRequestsRunning,
				"lmdeploy:gpu_cache_usage_perc": schema.MetricLLMKVCacheUtilization, "lmdeploy:prefix_cache_hit_rate": schema.MetricLLMPrefixCacheHitRatio,
				"lmdeploy:spec_decode_mean_accept_length": schema.MetricLLMSpecDecodeAcceptLength,
			},
			counters: map[string]string{
				"lmdeploy:prompt_tokens_total": schema.MetricLLMTokensPrompt, "lmdeploy:generation_tokens_total": schema.MetricLLMTokensGeneration,
				"lmdeploy:cached_tokens_total": schema.MetricLLMTokensPromptCached, "lmdeploy:request_success_total": schema.MetricLLMRequestsFinished,
				"lmdeploy:spec_decode_num_accepted_tokens_per_pos_total": schema.MetricLLMSpecDecodeAcceptedTokensByPosition,
			},
		},
		{
			name: "nim_datadog", engine: schema.EngineNim,
			body: func(t *testing.T) []byte { return fixtures.Read(t, "nim/datadog_nvidia_nim_metrics.txt") },
			// NIM's names carry no prefix: every family that is not the process's or Python's is NIM's.
			own: func(name string) bool {
				return !strings.Contains(name, ".") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "python_")
			},
			gauges: map[string]string{
				"num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting, "num_requests_running": schema.MetricLLMSchedulerRequestsRunning,
				"num_request_max": schema.MetricLLMSchedulerRequestsMaxRunning, "gpu_cache_usage_perc": schema.MetricLLMKVCacheUtilization,
			},
			counters: map[string]string{
				"prompt_tokens_total": schema.MetricLLMTokensPrompt, "generation_tokens_total": schema.MetricLLMTokensGeneration,
				"request_finish_total": schema.MetricLLMRequestsFinished, "request_failure_total": schema.MetricLLMRequestsErrors,
			},
		},
		{
			name: "kserve_hf_vllm_v0.20", engine: schema.EngineKserve,
			body: func(t *testing.T) []byte { return receiverPage(t, "kservereceiver", "metrics_hf_vllm_v0.20.txt") },
			own:  func(name string) bool { return strings.HasPrefix(name, "request_") || strings.HasPrefix(name, "vllm:") },
			gauges: map[string]string{
				"vllm:num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting, "vllm:num_requests_running": schema.MetricLLMSchedulerRequestsRunning,
				"vllm:kv_cache_usage_perc": schema.MetricLLMKVCacheUtilization,
			},
			counters: map[string]string{
				"vllm:prompt_tokens_total": schema.MetricLLMTokensPrompt, "vllm:generation_tokens_total": schema.MetricLLMTokensGeneration,
				"vllm:request_success_total": schema.MetricLLMRequestsFinished,
			},
		},
		{
			name: "dynamo_frontend_2026", engine: schema.EngineDynamo,
			body: func(t *testing.T) []byte { return receiverPage(t, "dynamoreceiver", "metrics_frontend_2026.txt") },
			own:  func(name string) bool { return strings.HasPrefix(name, "dynamo_") },
			gauges: map[string]string{
				"dynamo_frontend_queued_requests": schema.MetricLLMServeRequestsQueued, "dynamo_frontend_inflight_requests": schema.MetricLLMServeRequestsInflight,
				"dynamo_frontend_model_kv_cache_block_size": schema.MetricLLMKVCacheBlockSize, "dynamo_frontend_model_total_kv_blocks": schema.MetricLLMKVCacheBlocksTotal,
				"dynamo_frontend_model_max_num_seqs": schema.MetricLLMSchedulerRequestsMaxRunning,
			},
		},
		{
			name: "dynamo_worker_sglang_2025", engine: schema.EngineDynamo,
			body: func(t *testing.T) []byte { return receiverPage(t, "dynamoreceiver", "metrics_worker_sglang_2025.txt") },
			own: func(name string) bool {
				return strings.HasPrefix(name, "dynamo_") || strings.HasPrefix(name, "sglang:")
			},
			gauges: map[string]string{
				"dynamo_component_kvstats_active_blocks": schema.MetricLLMKVCacheBlocksUsed, "dynamo_component_kvstats_total_blocks": schema.MetricLLMKVCacheBlocksTotal,
				"dynamo_component_kvstats_gpu_prefix_cache_hit_rate": schema.MetricLLMPrefixCacheHitRatio,
				"dynamo_component_inflight_requests":                 schema.MetricLLMServeRequestsProcessing, "sglang:num_running_reqs": schema.MetricLLMSchedulerRequestsRunning,
			},
		},
		{
			name: "dynamo_worker_vllm_2026", engine: schema.EngineDynamo,
			body: func(t *testing.T) []byte { return receiverPage(t, "dynamoreceiver", "metrics_worker_vllm_2026.txt") },
			own:  func(name string) bool { return strings.HasPrefix(name, "dynamo_") || strings.HasPrefix(name, "vllm:") },
			gauges: map[string]string{
				"dynamo_component_inflight_requests": schema.MetricLLMServeRequestsProcessing,
				"vllm:num_requests_running":          schema.MetricLLMSchedulerRequestsRunning, "vllm:num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting,
			},
			counters: map[string]string{
				"vllm:prompt_tokens_total": schema.MetricLLMTokensPrompt, "vllm:request_success_total": schema.MetricLLMRequestsFinished,
			},
		},
		{
			name: "kserve_qpext_v0.20", engine: schema.EngineKserve,
			body: func(t *testing.T) []byte { return receiverPage(t, "kservereceiver", "metrics_qpext_v0.20.txt") },
			own: func(name string) bool {
				return strings.HasPrefix(name, "request_") || strings.HasPrefix(name, "revision_")
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := c.body(t)
			md := enginescrape.ExpositionToMetrics(body, time.Now())
			md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, c.engine)
			out := normalize(t, &Config{}, md).out
			for wire, canonical := range c.gauges {
				want := fixtures.Samples(body, wire)
				require.NotEmpty(t, want, wire)
				m := single(t, out, canonical)
				require.Equal(t, pmetric.MetricTypeGauge, m.Type(), canonical)
				require.Equal(t, len(want), m.Gauge().DataPoints().Len(), canonical)
				for i, w := range want {
					assert.Equal(t, w.Value, m.Gauge().DataPoints().At(i).DoubleValue(), "%s from %s", canonical, wire)
				}
			}
			for wire, canonical := range c.counters {
				require.NotEmpty(t, fixtures.Samples(body, wire), wire)
				assert.Equal(t, fixtures.Sum(body, wire), sumOf(single(t, out, canonical)), "%s from %s", canonical, wire)
			}
			for name := range metrics(out) {
				if c.own(name) {
					assert.NotEmpty(t, passthroughReason(s, c.engine, name), "%s is neither mapped nor a documented pass-through", name)
				}
			}
		})
	}
}

// LMDeploy's labels: the data-parallel rank is the engine index, the finish reason keeps LMDeploy's values.
func TestLMDeployLabels(t *testing.T) {
	body := receiverPage(t, "lmdeployreceiver", "metrics_v0.16.0.txt")
	md := enginescrape.ExpositionToMetrics(body, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineLmdeploy)
	out := normalize(t, &Config{}, md).out
	finished := single(t, out, schema.MetricLLMRequestsFinished)
	reasons := map[string]float64{}
	for _, dp := range finished.Sum().DataPoints().All() {
		attrs := dp.Attributes().AsRaw()
		assert.Equal(t, "0", attrs[schema.AttrLLMEngineIndex])
		assert.Equal(t, "internlm/internlm2_5-7b-chat", attrs[schema.AttrGenAIRequestModel])
		reasons[attrs[schema.AttrLLMFinishReason].(string)] = dp.DoubleValue()
	}
	for _, w := range fixtures.Samples(body, "lmdeploy:request_success_total") {
		assert.Equal(t, w.Value, reasons[labelValue(w.Labels, "finished_reason")], labelValue(w.Labels, "finished_reason"))
	}
	ttft := single(t, out, schema.MetricGenAIServerTimeToFirstToken)
	assert.Equal(t, "s", ttft.Unit())
	assert.InDelta(t, fixtures.Sum(body, "lmdeploy:time_to_first_token_seconds_sum"), ttft.Histogram().DataPoints().At(0).Sum(), 1e-9)
}

// NIM's bare names are the receiver's to claim: under llm.engine.name nim they map, with no engine name
// they stay as they are (a guess from the names could as well say TensorRT-LLM's first release candidates,
// which wrote num_requests_running bare too), and under tensorrt_llm they map by TensorRT-LLM's rules.
func TestNIMNamesMapOnlyUnderTheReceiversEngineName(t *testing.T) {
	body := fixtures.Read(t, "nim/datadog_nvidia_nim_metrics.txt")
	run := func(engine string) pmetric.Metrics {
		md := enginescrape.ExpositionToMetrics(body, time.Now())
		if engine != "" {
			md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, engine)
		}
		return normalize(t, &Config{}, md).out
	}
	nim := metrics(run(schema.EngineNim))
	assert.Contains(t, nim, schema.MetricLLMSchedulerRequestsMaxRunning)
	assert.NotContains(t, nim, "num_request_max")

	unnamed := metrics(run(""))
	assert.NotContains(t, unnamed, schema.MetricLLMSchedulerRequestsRunning, "no engine is guessed from bare names")
	assert.Contains(t, unnamed, "num_requests_running")

	trtllm := metrics(run(schema.EngineTensorrtLLM))
	assert.Contains(t, trtllm, schema.MetricLLMSchedulerRequestsRunning, "TensorRT-LLM's bare spelling")
	assert.NotContains(t, trtllm, schema.MetricLLMSchedulerRequestsMaxRunning, "num_request_max is NIM's, not TensorRT-LLM's")
}

// NIM's finish reasons and its one histogram unit: seconds stay seconds, the finish reason is NIM's label.
func TestNIMFinishReasonsAndLatency(t *testing.T) {
	body := fixtures.Read(t, "nim/datadog_nvidia_nim_metrics.txt")
	md := enginescrape.ExpositionToMetrics(body, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineNim)
	out := normalize(t, &Config{}, md).out
	finished := single(t, out, schema.MetricLLMRequestsFinished)
	require.Equal(t, 1, finished.Sum().DataPoints().Len())
	attrs := finished.Sum().DataPoints().At(0).Attributes().AsRaw()
	assert.Equal(t, "length", attrs[schema.AttrLLMFinishReason])
	assert.Equal(t, "meta/llama-3.1-8b-instruct", attrs[schema.AttrGenAIRequestModel])
	e2e := single(t, out, schema.MetricGenAIServerRequestDuration)
	assert.Equal(t, "s", e2e.Unit())
	assert.Equal(t, uint64(fixtures.Sum(body, "e2e_request_latency_seconds_count")), e2e.Histogram().DataPoints().At(0).Count())
	assert.InDelta(t, fixtures.Sum(body, "e2e_request_latency_seconds_sum"), e2e.Histogram().DataPoints().At(0).Sum(), 1e-12)
}

// passthroughReason is the engine's reason for leaving a family unmapped, or that of an engine it embeds.
func passthroughReason(s *schema.Schema, engine, family string) string {
	if reason := s.Engines[engine].PassthroughReason(family); reason != "" {
		return reason
	}
	for _, embedded := range s.Engines[engine].Embeds {
		if reason := s.Engines[embedded].PassthroughReason(family); reason != "" {
			return reason
		}
	}
	return ""
}

// KServe's step histograms keep their seconds and model; the vLLM backend's families on the same page map
// by vLLM's rules into the same resource: one replica.
func TestKServeStepsAndItsVLLMBackend(t *testing.T) {
	qp := receiverPage(t, "kservereceiver", "metrics_qpext_v0.20.txt")
	md := enginescrape.ExpositionToMetrics(qp, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineKserve)
	out := normalize(t, &Config{}, md).out
	for wire, canonical := range map[string]string{
		"request_preprocess_seconds": schema.MetricLLMServePreprocessTime, "request_predict_seconds": schema.MetricLLMServePredictTime,
		"request_postprocess_seconds": schema.MetricLLMServePostprocessTime,
	} {
		m := single(t, out, canonical)
		assert.Equal(t, "s", m.Unit())
		dp := m.Histogram().DataPoints().At(0)
		assert.Equal(t, uint64(fixtures.Sum(qp, wire+"_count")), dp.Count(), canonical)
		assert.InDelta(t, fixtures.Sum(qp, wire+"_sum"), dp.Sum(), 1e-9, canonical)
		assert.Equal(t, "fraud-detector", dp.Attributes().AsRaw()[schema.AttrGenAIRequestModel])
	}
	assert.Contains(t, metrics(out), "revision_queue_depth", "the queue proxy's families pass through")

	hf := receiverPage(t, "kservereceiver", "metrics_hf_vllm_v0.20.txt")
	md = enginescrape.ExpositionToMetrics(hf, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineKserve)
	out = normalize(t, &Config{}, md).out
	require.Equal(t, 1, out.ResourceMetrics().Len())
	running := single(t, out, schema.MetricLLMSchedulerRequestsRunning)
	require.Equal(t, 1, running.Gauge().DataPoints().Len())
	assert.Equal(t, map[string]any{schema.AttrGenAIRequestModel: "qwen2-5-7b-instruct", schema.AttrLLMEngineIndex: "0"},
		running.Gauge().DataPoints().At(0).Attributes().AsRaw(), "vLLM's label renames apply")
	assert.NotContains(t, metrics(out), schema.MetricLLMServePredictTime, "declared but never observed: no series")
}

// A Dynamo frontend's request histograms keep their counts under the serving tier's names, never the
// engine's (the workers' engines report those); a worker's two block counts (the runtime's and vLLM's
// own) carry the same number, and the older kvstats_ spelling maps as the newer one does.
func TestDynamoTiers(t *testing.T) {
	front := receiverPage(t, "dynamoreceiver", "metrics_frontend_2026.txt")
	md := enginescrape.ExpositionToMetrics(front, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineDynamo)
	out := normalize(t, &Config{}, md).out
	for wire, canonical := range map[string]string{
		"dynamo_frontend_time_to_first_token_seconds": schema.MetricLLMServeTimeToFirstToken, "dynamo_frontend_inter_token_latency_seconds": schema.MetricLLMServeInterTokenLatency,
		"dynamo_frontend_request_duration_seconds": schema.MetricLLMServeRequestDuration, "dynamo_frontend_input_sequence_tokens": schema.MetricLLMServeRequestInputTokens,
		"dynamo_frontend_output_sequence_tokens": schema.MetricLLMServeRequestOutputTokens,
	} {
		dp := single(t, out, canonical).Histogram().DataPoints().At(0)
		assert.Equal(t, uint64(fixtures.Sum(front, wire+"_count")), dp.Count(), canonical)
		assert.InDelta(t, fixtures.Sum(front, wire+"_sum"), dp.Sum(), 1e-9, canonical)
		assert.Equal(t, "qwen/qwen3-0.6b", dp.Attributes().AsRaw()[schema.AttrGenAIRequestModel])
	}
	assert.NotContains(t, metrics(out), schema.MetricGenAIServerTimeToFirstToken, "the frontend is no engine")

	worker := receiverPage(t, "dynamoreceiver", "metrics_worker_vllm_2026.txt")
	md = enginescrape.ExpositionToMetrics(worker, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineDynamo)
	out = normalize(t, &Config{}, md).out
	blocks := single(t, out, schema.MetricLLMKVCacheBlocksTotal)
	require.Equal(t, 2, blocks.Gauge().DataPoints().Len(), "the runtime's and the engine's")
	for _, dp := range blocks.Gauge().DataPoints().All() {
		assert.Equal(t, fixtures.Samples(worker, "dynamo_component_total_blocks")[0].Value, dp.DoubleValue())
		assert.Equal(t, "0", dp.Attributes().AsRaw()[schema.AttrLLMEngineIndex])
	}
	size := labelValue(fixtures.Samples(worker, "vllm:cache_config_info")[0].Labels, "block_size")
	assert.Equal(t, size, strconv.FormatFloat(single(t, out, schema.MetricLLMKVCacheBlockSize).Gauge().DataPoints().At(0).DoubleValue(), 'f', -1, 64))
}
