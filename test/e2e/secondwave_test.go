package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/dashboards"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/promnames"
	"github.com/servescope/servescope/internal/schema"
)

// secondWavePage is an engine page for the second-wave receivers: a real capture from testdata/ where one is
// public, else the page the receiver's own testdata has, written from the engine's source.
type secondWavePage struct {
	receiver    string // component type
	capture     string // under testdata/, or ""
	page        string // under receiver/<pkg>/testdata/, when capture is ""
	pkg         string
	metricsPath string
	backend     string // llm.engine.backend the replica must carry, or "" for none
	// gauges maps wire families to the canonical gauges that must carry their values.
	gauges map[string]string
}

func (p secondWavePage) body(t *testing.T) []byte {
	if p.capture != "" {
		return fixtures.Read(t, p.capture)
	}
	body, err := os.ReadFile(filepath.Join("..", "..", "receiver", p.pkg, "testdata", p.page))
	require.NoError(t, err)
	return body
}

var secondWavePages = []secondWavePage{
	{
		receiver: "lmdeploy", pkg: "lmdeployreceiver", page: "metrics_v0.16.0.txt", metricsPath: "/metrics",
		gauges: map[string]string{
			"lmdeploy:num_requests_running": schema.MetricLLMSchedulerRequestsRunning,
			"lmdeploy:num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting,
			"lmdeploy:gpu_cache_usage_perc": schema.MetricLLMKVCacheUtilization,
		},
	},
	{
		receiver: "nim", capture: "nim/datadog_nvidia_nim_metrics.txt", metricsPath: "/v1/metrics",
		gauges: map[string]string{
			"num_requests_running": schema.MetricLLMSchedulerRequestsRunning,
			"num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting,
			"num_request_max":      schema.MetricLLMSchedulerRequestsMaxRunning,
			"gpu_cache_usage_perc": schema.MetricLLMKVCacheUtilization,
		},
	},
	{
		receiver: "kserve", pkg: "kservereceiver", page: "metrics_hf_vllm_v0.20.txt", metricsPath: "/metrics", backend: "vllm",
		gauges: map[string]string{
			"vllm:num_requests_running": schema.MetricLLMSchedulerRequestsRunning,
			"vllm:num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting,
			"vllm:kv_cache_usage_perc":  schema.MetricLLMKVCacheUtilization,
		},
	},
	{
		// A Dynamo worker's system port: the runtime's families and its vLLM engine's, one replica.
		receiver: "dynamo", pkg: "dynamoreceiver", page: "metrics_worker_vllm_2026.txt", metricsPath: "/metrics", backend: "vllm",
		gauges: map[string]string{
			"vllm:num_requests_running":          schema.MetricLLMSchedulerRequestsRunning,
			"vllm:num_requests_waiting":          schema.MetricLLMSchedulerRequestsWaiting,
			"dynamo_component_inflight_requests": schema.MetricLLMServeRequestsProcessing,
		},
	},
}

// serve starts a stand-in engine that serves the page at its metrics path and returns its URL.
func (p secondWavePage) serve(t *testing.T) string {
	body := p.body(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != p.metricsPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// checkSecondWaveReplicas: every canonical metric a dashboard or alert reads, where a second-wave engine's
// page carries a family that feeds it (by the engine's rules or those of the engine it embeds), is in
// Prometheus under that engine's replica, and each engine is one replica. The dashboards are unchanged:
// they read the same names for these engines as for the simulated vLLM and SGLang fleet.
func checkSecondWaveReplicas(t *testing.T, sch *schema.Schema, set []dashboards.Dashboard, promAddr string) {
	t.Helper()
	var exprs strings.Builder
	for _, d := range set {
		for _, p := range d.Panels {
			for _, e := range p.Exprs {
				exprs.WriteString(e.Query + "\n")
			}
		}
	}
	for _, r := range dashboards.Rules(sch) {
		exprs.WriteString(r.Expr + "\n")
	}
	read := exprs.String()
	engineLabel := promnames.Label(schema.AttrLLMEngineName)
	for _, p := range secondWavePages {
		t.Run("dashboards/"+p.receiver, func(t *testing.T) {
			body := string(p.body(t))
			engines := append([]string{p.receiver}, sch.Engines[p.receiver].Embeds...)
			var checked []string
			for _, m := range sch.Metrics {
				name := promnames.Name(m)
				if !strings.Contains(read, name) || !fedBy(sch, m, engines, body) {
					continue
				}
				series := name
				if m.Instrument == schema.Histogram {
					series += "_count"
				}
				n, err := query(promAddr, fmt.Sprintf(`count by (instance) (%s{%s=%q})`, series, engineLabel, p.receiver))
				require.NoError(t, err)
				assert.Equal(t, 1, n, "%s: one replica of %s carries what the dashboards read", series, p.receiver)
				checked = append(checked, series)
			}
			assert.GreaterOrEqual(t, len(checked), 4, "the dashboards read several of %s's canonical metrics", p.receiver)
			t.Logf("%s: the dashboards read %s, all present", p.receiver, strings.Join(checked, ", "))
		})
	}
}

// fedBy says whether the page carries a family that one of the engines maps onto the metric.
func fedBy(sch *schema.Schema, m *schema.Metric, engines []string, body string) bool {
	for _, engine := range engines {
		for _, src := range m.Sources[engine] {
			for _, spelling := range sch.Engines[engine].Spellings(src.Name) {
				if strings.Contains(body, "\n"+spelling+"{") || strings.Contains(body, "\n"+spelling+"_bucket{") || strings.HasPrefix(body, spelling+"{") {
					return true
				}
			}
		}
	}
	return false
}

// Each second-wave engine's page, served where the engine serves it, goes through its receiver and
// llm_normalize in the built binary and comes out under canonical names with the page's values (read from
// the page's text), stamped with the receiver's engine name.
func TestSecondWaveEnginesThroughTheBinary(t *testing.T) {
	for _, p := range secondWavePages {
		t.Run(p.receiver, func(t *testing.T) {
			t.Parallel()
			body := p.body(t)
			url := p.serve(t)
			sink := newOTLPSink(t)
			block := fmt.Sprintf("%s:\n    endpoint: %s\n    collection_interval: 300ms", p.receiver, url)
			startCollector(t, pipelineConfig(p.receiver, block, sink.URL))
			md := sink.waitFor(t, schema.MetricLLMSchedulerRequestsRunning, 30*time.Second)
			require.Equal(t, 1, md.ResourceMetrics().Len(), "one replica")
			res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
			assert.Equal(t, p.receiver, res[schema.AttrLLMEngineName])
			if p.backend != "" {
				assert.Equal(t, p.backend, res[schema.AttrLLMEngineBackend])
			} else {
				assert.NotContains(t, res, schema.AttrLLMEngineBackend)
			}
			for wire, canonical := range p.gauges {
				got := find(md, canonical)
				require.Len(t, got, 1, canonical)
				assert.Equal(t, rawValues(fixtures.Samples(body, wire)), gaugeValues(got[0]), "%s from %s", canonical, wire)
				assert.Empty(t, find(md, wire), "the vendor original %s is replaced", wire)
			}
		})
	}
}

// mlcLLMValue reads key's value from MLC LLM's page as it is written, `key<TAB>value` (not the exposition
// format, so not through internal/fixtures).
func mlcLLMValue(t *testing.T, body []byte, key string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok && k == key {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	require.Failf(t, "key not on the page", "%s", key)
	return 0
}

// MLC LLM's page (tab-separated lines, written from its source), served at /metrics, goes through the
// mlc_llm receiver and llm_normalize in the built binary: the canonical gauges and counters carry the
// page's values, stamped with the receiver's engine name. It is not among secondWavePages: the page has no
// scheduler gauges, which those checks wait for and the dashboards read.
func TestSecondWaveMLCLLMThroughTheBinary(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "..", "receiver", "mlcllmreceiver", "testdata", "metrics_v0.20.0.txt"))
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8") // FastAPI's PlainTextResponse
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	sink := newOTLPSink(t)
	block := fmt.Sprintf("mlc_llm:\n    endpoint: %s\n    collection_interval: 300ms", srv.URL)
	startCollector(t, pipelineConfig("mlc_llm", block, sink.URL))
	md := sink.waitFor(t, schema.MetricLLMThroughputPrompt, 30*time.Second)
	require.Equal(t, 1, md.ResourceMetrics().Len(), "one replica")
	assert.Equal(t, schema.EngineMlcLLM, md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
	for key, canonical := range map[string]string{
		"prefill_tokens_per_s": schema.MetricLLMThroughputPrompt, "decode_tokens_per_s": schema.MetricLLMThroughputGeneration,
		"last_finished_request_ttft_s":                schema.MetricLLMRequestLastTimeToFirstToken,
		"last_finished_request_inter_token_latency_s": schema.MetricLLMRequestLastInterTokenLatency,
		"last_finished_request_end_to_end_latency_s":  schema.MetricLLMRequestLastDuration,
	} {
		got := find(md, canonical)
		require.Len(t, got, 1, canonical)
		assert.Equal(t, []float64{mlcLLMValue(t, body, key)}, gaugeValues(got[0]), "%s from %s", canonical, key)
		assert.Empty(t, find(md, key), "the vendor original %s is replaced", key)
	}
	for key, canonical := range map[string]string{
		"engine_prefill_time_sum": schema.MetricLLMEnginePrefillDuration, "engine_decode_time_sum": schema.MetricLLMEngineDecodeDuration,
		"prompt_tokens_sum": schema.MetricLLMTokensPrompt, "completion_tokens_sum": schema.MetricLLMTokensGeneration,
		"prefill_tokens_sum": schema.MetricLLMTokensPromptComputed,
	} {
		got := find(md, canonical)
		require.Len(t, got, 1, canonical)
		assert.Equal(t, mlcLLMValue(t, body, key), sumValues(got[0]), "%s from %s", canonical, key)
	}
	assert.Equal(t, "s", find(md, schema.MetricLLMEnginePrefillDuration)[0].Unit(), "MLC LLM's seconds are the schema's")
}

// A Dynamo frontend and one worker through the binary, with llm_signals and llm_routing: the frontend's
// resource says its tier and carries the page's values under the serving tier's names and the model's
// configuration as canonical gauges, the pool counts one replica (the worker, not the frontend), and the
// router lists the worker alone, with the block size and count its vLLM engine's labels say.
func TestSecondWaveDynamoFrontendAndWorker(t *testing.T) {
	frontend := secondWavePage{receiver: "dynamo", pkg: "dynamoreceiver", page: "metrics_frontend_2026.txt", metricsPath: "/metrics"}
	worker := secondWavePage{receiver: "dynamo", pkg: "dynamoreceiver", page: "metrics_worker_vllm_2026.txt", metricsPath: "/metrics"}
	frontendBody, workerBody := frontend.body(t), worker.body(t)
	frontendURL, workerURL := frontend.serve(t), worker.serve(t)
	sink := newOTLPSink(t)
	routing := freePort(t)
	startCollector(t, fmt.Sprintf(`
receivers:
  dynamo/frontend:
    endpoint: %s
    collection_interval: 300ms
  dynamo/worker:
    endpoint: %s
    collection_interval: 300ms
processors:
  llm_normalize: {}
connectors:
  llm_signals:
    interval: 1s
    stale: 10s
exporters:
  otlp_http:
    endpoint: %s
    compression: none
    retry_on_failure:
      enabled: false
  llm_routing:
    endpoint: %s
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [dynamo/frontend, dynamo/worker]
      processors: [llm_normalize]
      exporters: [otlp_http, llm_signals, llm_routing]
    metrics/signals:
      receivers: [llm_signals]
      exporters: [otlp_http, llm_routing]
`, frontendURL, workerURL, sink.URL, routing))

	md := sink.waitFor(t, schema.MetricLLMServeTimeToFirstToken, 30*time.Second)
	var front map[string]any
	for _, rm := range md.ResourceMetrics().All() {
		if res := rm.Resource().Attributes().AsRaw(); res[schema.AttrLLMServeTier] == schema.ServeTierFrontend {
			front = res
		}
	}
	require.NotNil(t, front, "the frontend's resource says its tier")
	assert.Equal(t, "dynamo", front[schema.AttrLLMEngineName])
	assert.NotContains(t, front, schema.AttrLLMEngineBackend)
	for wire, canonical := range map[string]string{
		"dynamo_frontend_queued_requests":           schema.MetricLLMServeRequestsQueued,
		"dynamo_frontend_inflight_requests":         schema.MetricLLMServeRequestsInflight,
		"dynamo_frontend_model_kv_cache_block_size": schema.MetricLLMKVCacheBlockSize,
		"dynamo_frontend_model_max_num_seqs":        schema.MetricLLMSchedulerRequestsMaxRunning,
	} {
		got := find(md, canonical)
		require.Len(t, got, 1, canonical)
		assert.Equal(t, rawValues(fixtures.Samples(frontendBody, wire)), gaugeValues(got[0]), "%s from %s", canonical, wire)
	}
	ttft := find(md, schema.MetricLLMServeTimeToFirstToken)[0].Histogram().DataPoints().At(0)
	assert.Equal(t, uint64(fixtures.Sum(frontendBody, "dynamo_frontend_time_to_first_token_seconds_count")), ttft.Count())

	const model = "qwen/qwen3-0.6b"
	poolSizes := func() []float64 {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		var out []float64
		for _, md := range sink.batches {
			for _, m := range find(md, schema.MetricLLMPoolReplicas) {
				for _, dp := range m.Gauge().DataPoints().All() {
					if dp.Attributes().AsRaw()[schema.AttrGenAIRequestModel] == model {
						out = append(out, dp.DoubleValue())
					}
				}
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(poolSizes()) >= 3 }, 30*time.Second, 200*time.Millisecond, "llm_signals reports the pool")
	sizes := poolSizes()
	assert.Equal(t, 1.0, sizes[len(sizes)-1], "the worker is the one replica; the frontend is none")
	assert.NotContains(t, sizes, 2.0, "the frontend was never counted")

	var replicas string
	require.Eventually(t, func() bool {
		var status int
		status, replicas = fetch("http://" + routing + "/v1/replicas")
		return status == http.StatusOK && strings.Contains(replicas, "dynamo")
	}, 30*time.Second, 200*time.Millisecond, "the router lists the worker")
	workerInstance := strings.TrimPrefix(workerURL, "http://")
	assert.Contains(t, replicas, workerInstance)
	assert.NotContains(t, replicas, strings.TrimPrefix(frontendURL, "http://"), "the frontend is no replica to route to")
	info := fixtures.Samples(workerBody, "vllm:cache_config_info")
	require.Len(t, info, 1)
	_, page := fetch("http://" + routing + "/model-server/" + workerInstance + "/metrics")
	assert.Contains(t, page, fmt.Sprintf(`block_size=%q,num_gpu_blocks=%q`, rawLabel(info[0].Labels, "block_size"), rawLabel(info[0].Labels, "num_gpu_blocks")),
		"the block data the engine's labels say, counted once")
}

// rawLabel is the value of label name in a raw sample's label text (values without commas or quotes).
func rawLabel(labels, name string) string {
	for _, part := range strings.Split(labels, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), name+"="); ok {
			return strings.Trim(v, `"{}`)
		}
	}
	return ""
}
