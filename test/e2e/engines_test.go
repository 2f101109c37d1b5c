package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// The SGLang and llama.cpp captures, served as their engines serve them, go through their receivers and
// llm_normalize in the built binary and come out under canonical names with the capture's values.
func TestOtherEngineCapturesThroughTheBinary(t *testing.T) {
	cases := []struct {
		receiver, glob, waiting, running, third, thirdCanonical string
	}{
		{"sglang", "sglang/*.txt", "sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage", schema.MetricLLMKVCacheUtilization},
		{"llama_cpp", "llamacpp/*.txt", "llamacpp:requests_deferred", "llamacpp:requests_processing", "llamacpp:kv_cache_usage_ratio", schema.MetricLLMKVCacheUtilization},
		// Ray Serve LLM: the real capture of a Ray metrics endpoint with vLLM's re-exported families.
		{"ray_serve", "vllm/datadog_ray_vllm_metrics.txt", "ray_vllm:num_requests_waiting", "ray_vllm:num_requests_running", "ray_vllm:num_requests_swapped", schema.MetricLLMSchedulerRequestsSwapped},
	}
	for _, c := range cases {
		for _, rel := range fixtures.Glob(t, c.glob) {
			t.Run(rel, func(t *testing.T) {
				t.Parallel()
				body := fixtures.Read(t, rel)
				srv := engine(t, body)
				sink := newOTLPSink(t)
				block := fmt.Sprintf("%s:\n    endpoint: %s\n    collection_interval: 300ms", c.receiver, srv.URL)
				if c.receiver == "ray_serve" {
					block += "\n    dashboard_endpoint: \"\"" // no dashboard in this test
				}
				startCollector(t, pipelineConfig(c.receiver, block, sink.URL))
				md := sink.waitFor(t, schema.MetricLLMSchedulerRequestsRunning, 30*time.Second)
				assert.Equal(t, strings.ReplaceAll(c.receiver, "-", "_"), md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
				if c.receiver == "ray_serve" {
					// The Ray node's IP (NodeAddress), for the gateway's k8s_attributes to find the pod by.
					assert.Equal(t, "10.112.217.4", md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrK8sPodIp])
				}
				for wire, canonical := range map[string]string{
					c.waiting: schema.MetricLLMSchedulerRequestsWaiting,
					c.running: schema.MetricLLMSchedulerRequestsRunning, c.third: c.thirdCanonical,
				} {
					got := find(md, canonical)
					require.Len(t, got, 1, canonical)
					assert.Equal(t, rawValues(fixtures.Samples(body, wire)), gaugeValues(got[0]), "%s from %s", canonical, wire)
				}
				assert.Empty(t, find(md, c.running), "the vendor original is replaced")
			})
		}
	}
}

// trtllm-serve under each of its three spellings (trtllm_, Dynamo's trtllm:, early release candidates'
// bare names) comes out of the binary under the same canonical names.
func TestTensorRTLLMSpellingsThroughTheBinary(t *testing.T) {
	for _, file := range []string{"prometheus_metrics_2026.txt", "prometheus_metrics_dynamo.txt", "prometheus_metrics_rc.txt"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			body, err := os.ReadFile(filepath.Join("..", "..", "receiver", "tensorrtllmreceiver", "testdata", file))
			require.NoError(t, err)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/prometheus/metrics":
					_, _ = w.Write(body)
				case "/version":
					_, _ = w.Write([]byte(`{"version":"1.2.0"}`))
				case "/health":
				default:
					http.NotFound(w, r)
				}
			}))
			t.Cleanup(srv.Close)
			sink := newOTLPSink(t)
			block := fmt.Sprintf("tensorrt_llm:\n    endpoint: %s\n    collection_interval: 300ms", srv.URL)
			startCollector(t, pipelineConfig("tensorrt_llm", block, sink.URL))
			md := sink.waitFor(t, schema.MetricLLMSchedulerRequestsRunning, 30*time.Second)
			wire := map[string]string{"prometheus_metrics_2026.txt": "trtllm_", "prometheus_metrics_dynamo.txt": "trtllm:", "prometheus_metrics_rc.txt": ""}[file]
			for family, canonical := range map[string]string{
				"num_requests_running": schema.MetricLLMSchedulerRequestsRunning,
				"num_requests_waiting": schema.MetricLLMSchedulerRequestsWaiting,
			} {
				got := find(md, canonical)
				require.Len(t, got, 1, canonical)
				assert.Equal(t, rawValues(fixtures.Samples(body, wire+family)), gaugeValues(got[0]))
			}
			finished := find(md, schema.MetricLLMRequestsFinished)
			require.Len(t, finished, 1)
			assert.Equal(t, fixtures.Sum(body, wire+"request_success_total"), sumValues(finished[0]))
			reason, _ := finished[0].Sum().DataPoints().At(0).Attributes().Get(schema.AttrLLMFinishReason)
			assert.Equal(t, "stop", reason.Str())
			e2e := find(md, schema.MetricGenAIServerRequestDuration)
			require.Len(t, e2e, 1)
			assert.Equal(t, uint64(fixtures.Sum(body, wire+"e2e_request_latency_seconds_count")), e2e[0].Histogram().DataPoints().At(0).Count())
		})
	}
}

func sumValues(m pmetric.Metric) float64 {
	var total float64
	for _, dp := range m.Sum().DataPoints().All() {
		total += dp.DoubleValue()
	}
	return total
}

// Triton's real capture through the triton receiver: microsecond counters come out as seconds.
func TestTritonCaptureThroughTheBinary(t *testing.T) {
	body := fixtures.Read(t, "triton_trtllm/datadog_nvidia_triton_metrics.txt")
	srv := engine(t, body)
	sink := newOTLPSink(t)
	startCollector(t, pipelineConfig("triton", fmt.Sprintf("triton:\n    endpoint: %s\n    collection_interval: 300ms", srv.URL), sink.URL))
	md := sink.waitFor(t, schema.MetricLLMRequestsDuration, 30*time.Second)
	duration := find(md, schema.MetricLLMRequestsDuration)
	require.Len(t, duration, 1)
	assert.Equal(t, "s", duration[0].Unit())
	assert.InDelta(t, fixtures.Sum(body, "nv_inference_request_duration_us")/1e6, sumValues(duration[0]), 1e-6)
	assert.Equal(t, fixtures.Sum(body, "nv_inference_request_success"), sumValues(find(md, schema.MetricLLMRequestsFinished)[0]))
	assert.Equal(t, "triton", md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
}
