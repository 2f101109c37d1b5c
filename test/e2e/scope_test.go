package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/servescope/servescope/internal/schema"
)

// Every engine receiver in the built binary exports its metrics under its own package path as the
// instrumentation scope, whatever its type is called (llama_cpp, tensorrt_llm and ray_serve are not their
// packages' names), not under a shared or made-up one.
func TestEngineReceiversNameTheirPackageAsScope(t *testing.T) {
	want := map[string]string{
		schema.EngineVLLM:        "github.com/servescope/servescope/receiver/vllmreceiver",
		schema.EngineSglang:      "github.com/servescope/servescope/receiver/sglangreceiver",
		schema.EngineTriton:      "github.com/servescope/servescope/receiver/tritonreceiver",
		schema.EngineLlamaCpp:    "github.com/servescope/servescope/receiver/llamacppreceiver",
		schema.EngineTensorrtLLM: "github.com/servescope/servescope/receiver/tensorrtllmreceiver",
		schema.EngineRayServe:    "github.com/servescope/servescope/receiver/rayservereceiver",
	}
	// One stand-in engine for all: a one-series page wherever an engine serves Prometheus metrics.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "metrics") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte("# TYPE stand_in_series gauge\nstand_in_series 1\n"))
	}))
	t.Cleanup(srv.Close)
	sink := newOTLPSink(t)
	var blocks []string
	for _, name := range []string{"vllm", "sglang", "triton", "llama_cpp", "tensorrt_llm", "ray_serve"} {
		block := fmt.Sprintf("%s:\n    endpoint: %s\n    collection_interval: 300ms", name, srv.URL)
		if name == "ray_serve" {
			block += "\n    dashboard_endpoint: \"\""
		}
		blocks = append(blocks, block)
	}
	startCollector(t, fmt.Sprintf(`
receivers:
  %s
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
      receivers: [vllm, sglang, triton, llama_cpp, tensorrt_llm, ray_serve]
      exporters: [otlp_http]
`, strings.Join(blocks, "\n  "), sink.URL))

	got := map[string]map[string]bool{} // engine -> scope names of its exported resource metrics
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		sink.mu.Lock()
		for _, md := range sink.batches {
			for _, rm := range md.ResourceMetrics().All() {
				engineName, _ := rm.Resource().Attributes().Get(schema.AttrLLMEngineName)
				for _, sm := range rm.ScopeMetrics().All() {
					if got[engineName.Str()] == nil {
						got[engineName.Str()] = map[string]bool{}
					}
					got[engineName.Str()][sm.Scope().Name()] = true
				}
			}
		}
		sink.mu.Unlock()
	}
	for engineName, scope := range want {
		assert.Equal(t, map[string]bool{scope: true}, got[engineName], "%s receiver's exported batches", engineName)
	}
	assert.Len(t, got, len(want), "only engine receivers run: %v", got)
}
