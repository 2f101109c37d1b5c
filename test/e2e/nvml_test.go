package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// On a node without an NVIDIA driver (this one, CI), the nvml receiver warns once, emits nothing, and the
// rest of the pipeline keeps working. On a GPU node, scripts/gpu-smoke.sh checks real values instead.
func TestNVMLWithoutGPU(t *testing.T) {
	srv := engine(t, fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"))
	sink := newOTLPSink(t)
	config := strings.Replace(pipelineConfig("vllm", vllmReceiver(srv.URL)+"\n  nvml:\n    collection_interval: 1s", sink.URL),
		"receivers: [vllm]", "receivers: [vllm, nvml]", 1)
	col := startCollector(t, config)
	md := sink.waitFor(t, schema.MetricLLMSchedulerRequestsWaiting, 30*time.Second)
	assert.NotEmpty(t, find(md, schema.MetricLLMEngineUp))
	time.Sleep(2500 * time.Millisecond) // a few nvml scrapes
	if col.count("NVML library not found") == 0 {
		t.Skip("this machine has an NVIDIA driver; scripts/gpu-smoke.sh covers GPU nodes")
	}
	assert.Equal(t, 1, col.count("NVML library not found"), "one warning, not one per scrape")
	assert.NotContains(t, col.output.String(), "panic")
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, b := range sink.batches {
		assert.Empty(t, find(b, schema.MetricHwGPUUtilization), "no GPU data without a GPU")
	}
}
