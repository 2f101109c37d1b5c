package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// pipelineConfig scrapes with the given receiver block and exports what llm_normalize makes of it to sink.
func pipelineConfig(receiverName, receiverBlock, sinkURL string) string {
	return fmt.Sprintf(`
receivers:
  %s
processors:
  llm_normalize: {}
exporters:
  otlp_http:
    metrics_endpoint: %s/v1/metrics
    compression: none
    retry_on_failure:
      enabled: false
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [%s]
      processors: [llm_normalize]
      exporters: [otlp_http]
`, receiverBlock, sinkURL, receiverName)
}

func vllmReceiver(endpoint string) string {
	return fmt.Sprintf("vllm:\n    endpoint: %s\n    collection_interval: 300ms", endpoint)
}

func TestComponentsListed(t *testing.T) {
	out, err := exec.Command(binary, "components").CombinedOutput()
	require.NoError(t, err, string(out))
	text := string(out)
	receivers := text[strings.Index(text, "receivers:"):strings.Index(text, "processors:")]
	processors := text[strings.Index(text, "processors:"):strings.Index(text, "exporters:")]
	assert.Contains(t, receivers, "- name: vllm\n")
	assert.Contains(t, processors, "- name: llm_normalize\n")
	for _, stock := range []string{"- name: otlp\n", "- name: prometheus\n", "- name: host_metrics\n"} {
		assert.Contains(t, receivers, stock)
	}
}

// wireName returns the spelling a capture uses for a vLLM family (vllm:, ray_vllm: or ray_vllm_).
func wireName(body []byte, family string) string {
	for _, prefix := range []string{"vllm:", "ray_vllm:", "ray_vllm_"} {
		if strings.Contains(string(body), "\n"+prefix+family) {
			return prefix + family
		}
	}
	return ""
}

func labelValue(labels, name string) string {
	m := regexp.MustCompile(`(?:^|,)` + name + `="([^"]*)"`).FindStringSubmatch(labels)
	if m == nil {
		return ""
	}
	return m[1]
}

func gaugeValues(m pmetric.Metric) []float64 {
	var out []float64
	dps := m.Gauge().DataPoints()
	for i := 0; i < dps.Len(); i++ {
		out = append(out, dps.At(i).DoubleValue())
	}
	return out
}

func rawValues(samples []fixtures.RawSample) []float64 {
	out := make([]float64, len(samples))
	for i, s := range samples {
		out[i] = s.Value
	}
	return out
}

// Each real vLLM capture, scraped by the built binary through the vllm receiver and llm_normalize, comes out
// with canonical names, units and the capture's values.
func TestVLLMCapturesThroughTheBinary(t *testing.T) {
	for _, rel := range fixtures.Glob(t, "vllm/*.txt") {
		t.Run(rel, func(t *testing.T) {
			t.Parallel()
			body := fixtures.Read(t, rel)
			srv := engine(t, body)
			sink := newOTLPSink(t)
			startCollector(t, pipelineConfig("vllm", vllmReceiver(srv.URL), sink.URL))
			md := sink.waitFor(t, schema.MetricLLMSchedulerRequestsWaiting, 30*time.Second)

			res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
			assert.Equal(t, "vllm", res[schema.AttrLLMEngineName])
			assert.Equal(t, "0.11.2", res[schema.AttrLLMEngineVersion])
			assert.Equal(t, strings.TrimPrefix(srv.URL, "http://"), res[schema.AttrServiceInstanceID])

			up := find(md, schema.MetricLLMEngineUp)
			require.Len(t, up, 1)
			assert.EqualValues(t, 1, up[0].Gauge().DataPoints().At(0).IntValue())

			waiting := find(md, schema.MetricLLMSchedulerRequestsWaiting)[0]
			assert.Equal(t, "{request}", waiting.Unit())
			assert.Equal(t, rawValues(fixtures.Samples(body, wireName(body, "num_requests_waiting"))), gaugeValues(waiting))

			// KV usage per model: the current spelling where the capture has it, else the older one (the
			// hand-extended captures carry both spellings, for different models).
			want := map[string]float64{}
			for _, family := range []string{"gpu_cache_usage_perc", "kv_cache_usage_perc"} {
				if wire := wireName(body, family); wire != "" {
					for _, s := range fixtures.Samples(body, wire) {
						want[labelValue(s.Labels, "model_name")] = s.Value
					}
				}
			}
			kv := find(md, schema.MetricLLMKVCacheUtilization)
			require.Len(t, kv, 1)
			assert.Equal(t, "1", kv[0].Unit())
			got := map[string]float64{}
			for _, dp := range kv[0].Gauge().DataPoints().All() {
				model, _ := dp.Attributes().Get(schema.AttrGenAIRequestModel)
				got[model.Str()] = dp.DoubleValue()
			}
			assert.Equal(t, want, got)

			e2e := find(md, schema.MetricGenAIServerRequestDuration)
			require.Len(t, e2e, 1)
			assert.Equal(t, "s", e2e[0].Unit())
			wire := wireName(body, "e2e_request_latency_seconds")
			var count uint64
			var sum float64
			for i := 0; i < e2e[0].Histogram().DataPoints().Len(); i++ {
				count += e2e[0].Histogram().DataPoints().At(i).Count()
				sum += e2e[0].Histogram().DataPoints().At(i).Sum()
			}
			assert.Equal(t, uint64(fixtures.Sum(body, wire+"_count")), count)
			assert.InDelta(t, fixtures.Sum(body, wire+"_sum"), sum, 1e-6)

			prompt := find(md, schema.MetricLLMTokensPrompt)
			require.Len(t, prompt, 1)
			assert.Equal(t, fixtures.Sum(body, wireName(body, "prompt_tokens_total")), prompt[0].Sum().DataPoints().At(0).DoubleValue())
			if created := fixtures.Samples(body, "vllm:prompt_tokens_created"); len(created) == 1 {
				start := float64(prompt[0].Sum().DataPoints().At(0).StartTimestamp()) / 1e9
				assert.InDelta(t, created[0].Value, start, 1e-3, "the engine's _created is the start time")
			}
		})
	}
}

// A user who already scrapes vLLM with the stock prometheus receiver adds only llm_normalize.
func TestStockPrometheusReceiverPlusNormalize(t *testing.T) {
	body := fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt")
	srv := engine(t, body)
	sink := newOTLPSink(t)
	block := fmt.Sprintf(`prometheus:
    config:
      scrape_configs:
        - job_name: vllm
          scrape_interval: 1s
          static_configs:
            - targets: ["%s"]`, strings.TrimPrefix(srv.URL, "http://"))
	startCollector(t, pipelineConfig("prometheus", block, sink.URL))
	md := sink.waitFor(t, schema.MetricLLMTokensPrompt, 40*time.Second)

	waiting := find(md, schema.MetricLLMSchedulerRequestsWaiting)
	require.Len(t, waiting, 1)
	assert.Equal(t, rawValues(fixtures.Samples(body, "vllm:num_requests_waiting")), gaugeValues(waiting[0]))
	prompt := find(md, schema.MetricLLMTokensPrompt)[0]
	assert.Equal(t, fixtures.Sum(body, "vllm:prompt_tokens_total"), prompt.Sum().DataPoints().At(0).DoubleValue())
	model, _ := prompt.Sum().DataPoints().At(0).Attributes().Get(schema.AttrGenAIRequestModel)
	assert.Contains(t, model.Str(), "Qwen2.5-0.5B-Instruct")
	ttft := find(md, schema.MetricGenAIServerTimeToFirstToken)
	require.Len(t, ttft, 1)
	assert.Equal(t, uint64(fixtures.Sum(body, "vllm:time_to_first_token_seconds_count")), ttft[0].Histogram().DataPoints().At(0).Count())
	assert.Empty(t, find(md, "vllm:num_requests_waiting"), "mapped vendor originals are dropped by default")
}

// The binary with no --config runs the embedded default: scrape vLLM, normalize, serve Prometheus, summarize.
func TestDefaultConfig(t *testing.T) {
	body := fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt")
	srv := engine(t, body)
	prom, otlpHTTP := freePort(t), freePort(t)
	c := startCollector(t, "",
		"SERVESCOPE_VLLM_ENDPOINT="+srv.URL,
		"SERVESCOPE_PROMETHEUS_ENDPOINT="+prom,
		"SERVESCOPE_OTLP_GRPC_ENDPOINT="+freePort(t),
		"SERVESCOPE_OTLP_HTTP_ENDPOINT="+otlpHTTP,
		"SERVESCOPE_HEALTH_ENDPOINT="+freePort(t))

	var page string
	require.Eventually(t, func() bool {
		_, page = fetch("http://" + prom + "/metrics")
		return strings.Contains(page, "llm_scheduler_requests_waiting{")
	}, 40*time.Second, 250*time.Millisecond, "canonical metrics on the Prometheus endpoint")

	line := regexp.MustCompile(`(?m)^llm_scheduler_requests_running\{[^}]*llm_engine_name="vllm"[^}]*\} (\S+)$`).FindStringSubmatch(page)
	require.NotNil(t, line, page)
	v, err := strconv.ParseFloat(line[1], 64)
	require.NoError(t, err)
	assert.Equal(t, fixtures.Samples(body, "vllm:num_requests_running")[0].Value, v)
	assert.Contains(t, page, "gen_ai_server_request_duration_seconds_bucket{")
	require.Eventually(t, func() bool { return c.count(`"data points"`) > 0 }, 20*time.Second, 100*time.Millisecond,
		"a periodic summary on the console")

	// Request spans are explained out of the box: their phases reach the Prometheus endpoint.
	td := fixtures.Spans(t, "traces/stormlog_vllm_q05_spans_sample.jsonl", map[string]string{"service.name": "vllm"})
	shiftToNow(td)
	spans, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	require.NoError(t, err)
	resp, err := http.Post("http://"+otlpHTTP+"/v1/traces", "application/x-protobuf", bytes.NewReader(spans))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool {
		_, page = fetch("http://" + prom + "/metrics")
		return strings.Contains(page, `llm_request_root_cause_total{`) && strings.Contains(page, `llm_request_phase_duration_seconds_bucket{`)
	}, 60*time.Second, 250*time.Millisecond, "llm_root_cause's metrics on the Prometheus endpoint")
	assert.Regexp(t, `llm_request_root_cause_total\{[^}]*llm_root_cause="none"[^}]*\} 12`, page, "the 12 recorded requests, none slow")
}

// Bad engines, end to end: the collector keeps running, reports once, and keeps the good series.
func TestBadEngines(t *testing.T) {
	capture := fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt")
	cut := strings.Index(string(capture), "vllm:generation_tokens_total{") + 25
	cases := []struct {
		name     string
		endpoint func(t *testing.T) string
		up       int64
		warning  string
		keeps    string // a canonical metric that must still arrive
	}{
		{"connection refused", func(t *testing.T) string { return "http://" + freePort(t) }, 0, "unreachable", ""},
		{"html error page", func(t *testing.T) string {
			srv := httptestHTML(t)
			return srv
		}, 0, "returned no Prometheus series", ""},
		{"truncated body with NaN", func(t *testing.T) string {
			body := append([]byte("# TYPE llamacpp:n_busy_slots_per_decode gauge\nllamacpp:n_busy_slots_per_decode -nan(ind)\n"), capture[:cut]...)
			return engine(t, body).URL
		}, 1, "Skipped unparseable lines", schema.MetricLLMTokensPrompt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sink := newOTLPSink(t)
			col := startCollector(t, pipelineConfig("vllm", vllmReceiver(c.endpoint(t)), sink.URL))
			md := sink.waitFor(t, schema.MetricLLMEngineUp, 30*time.Second)
			assert.Equal(t, c.up, find(md, schema.MetricLLMEngineUp)[0].Gauge().DataPoints().At(0).IntValue())
			if c.keeps != "" {
				sink.waitFor(t, c.keeps, 10*time.Second)
			}
			time.Sleep(1500 * time.Millisecond) // several more scrapes at 300ms
			assert.Equal(t, 1, col.count(c.warning), "one warning, not one per scrape")
			assert.NotContains(t, col.output.String(), "panic")
		})
	}
}

func httptestHTML(t *testing.T) string {
	srv := engine(t, nil)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html>\n<body>\n<h1>Service Unavailable</h1>\n</body>\n</html>\n"))
	})
	return srv.URL
}
