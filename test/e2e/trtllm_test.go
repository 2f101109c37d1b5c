package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// The TensorRT-LLM backend's capture through the triton receiver and llm_normalize in the binary: each
// label value the schema selects comes out under its canonical name with the capture's value.
func TestTritonBackendCaptureThroughTheBinary(t *testing.T) {
	body := fixtures.Read(t, "triton_trtllm/tensorrtllm_backend_README_triton_metrics_example_ifb.txt")
	srv := engine(t, body)
	sink := newOTLPSink(t)
	startCollector(t, pipelineConfig("triton", fmt.Sprintf("triton:\n    endpoint: %s\n    collection_interval: 300ms", srv.URL), sink.URL))
	md := sink.waitFor(t, schema.MetricLLMKVCacheUtilization, 30*time.Second)
	value := func(family, label, v string) []float64 {
		for _, s := range fixtures.Samples(body, family) {
			if bytes.Contains([]byte(s.Labels), []byte(label+`="`+v+`"`)) {
				return []float64{s.Value}
			}
		}
		t.Fatalf("%s{%s=%q} not in the capture", family, label, v)
		return nil
	}
	for canonical, want := range map[string][]float64{
		schema.MetricLLMSchedulerRequestsWaiting: value("nv_trt_llm_request_metrics", "request_type", "waiting"),
		schema.MetricLLMSchedulerRequestsRunning: value("nv_trt_llm_request_metrics", "request_type", "active"),
		schema.MetricLLMKVCacheUtilization:       value("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "fraction"),
		schema.MetricLLMKVCacheBlocksFree:        value("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "free"),
	} {
		got := find(md, canonical)
		require.Len(t, got, 1, canonical)
		assert.Equal(t, want, gaugeValues(got[0]), canonical)
	}
	assert.Empty(t, find(md, "nv_trt_llm_request_metrics"), "every request_type is selected")
	assert.Len(t, find(md, "nv_trt_llm_runtime_memory_metrics"), 1, "unselected series pass through")
}

// trtllm-serve without its Prometheus endpoint: the iteration stats of /metrics come out as canonical
// metrics, and in a traces pipeline the records of /perf_metrics come out as llm_request spans.
func TestTensorRTLLMIterationStatsAndSpansThroughTheBinary(t *testing.T) {
	dir := filepath.Join("..", "..", "receiver", "tensorrtllmreceiver", "testdata")
	stats, err := os.ReadFile(filepath.Join(dir, "iteration_stats_2026.json"))
	require.NoError(t, err)
	records, err := os.ReadFile(filepath.Join(dir, "perf_metrics_2026.json"))
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write(stats)
		case "/perf_metrics":
			_, _ = w.Write(records)
		case "/steady_clock_offset":
			now := float64(time.Now().UnixNano()) / 1e9
			_, _ = fmt.Fprintf(w, `{"receive_ts": %f, "transmit_ts": %f}`, now-1.7e9, now-1.7e9)
		case "/version":
			_, _ = w.Write([]byte(`{"version":"1.2.0"}`))
		case "/health":
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	sink := newOTLPSink(t)
	spans := filepath.Join(t.TempDir(), "spans.jsonl")
	config := fmt.Sprintf(`
receivers:
  tensorrt_llm:
    endpoint: %s
    collection_interval: 300ms
processors:
  llm_normalize: {}
exporters:
  otlp_http:
    metrics_endpoint: %s/v1/metrics
    compression: none
    retry_on_failure: {enabled: false}
  file:
    path: %s
service:
  telemetry: {metrics: {level: none}}
  pipelines:
    metrics: {receivers: [tensorrt_llm], processors: [llm_normalize], exporters: [otlp_http]}
    traces: {receivers: [tensorrt_llm], exporters: [file]}
`, srv.URL, sink.URL, spans)
	startCollector(t, config)
	md := sink.waitFor(t, schema.MetricLLMSchedulerBatchContextRequests, 30*time.Second)
	assert.Len(t, find(md, schema.MetricLLMSchedulerRequestsRunning), 1)
	assert.Len(t, find(md, schema.MetricLLMRequestsQueueDuration), 1)

	var got []ptrace.Span
	require.Eventually(t, func() bool {
		f, err := os.Open(spans)
		if err != nil {
			return false
		}
		defer f.Close()
		got = got[:0]
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(sc.Bytes())
			if err != nil {
				continue
			}
			for _, rs := range td.ResourceSpans().All() {
				for _, ss := range rs.ScopeSpans().All() {
					for _, sp := range ss.Spans().All() {
						got = append(got, sp)
					}
				}
			}
		}
		return len(got) >= 3
	}, 30*time.Second, 200*time.Millisecond)
	for _, sp := range got {
		assert.Equal(t, "llm_request", sp.Name())
		_, ok := sp.Attributes().Get("gen_ai.latency.time_to_first_token")
		assert.True(t, ok)
	}
}
