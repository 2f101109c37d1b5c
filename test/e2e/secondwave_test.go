package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fixtures"
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
}

// Each second-wave engine's page, served where the engine serves it, goes through its receiver and
// llm_normalize in the built binary and comes out under canonical names with the page's values (read from
// the page's text), stamped with the receiver's engine name.
func TestSecondWaveEnginesThroughTheBinary(t *testing.T) {
	for _, p := range secondWavePages {
		t.Run(p.receiver, func(t *testing.T) {
			t.Parallel()
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
			sink := newOTLPSink(t)
			block := fmt.Sprintf("%s:\n    endpoint: %s\n    collection_interval: 300ms", p.receiver, srv.URL)
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
