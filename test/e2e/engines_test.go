package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// The SGLang and llama.cpp captures, served as their engines serve them, go through their receivers and
// llm_normalize in the built binary and come out under canonical names with the capture's values.
func TestOtherEngineCapturesThroughTheBinary(t *testing.T) {
	cases := []struct {
		receiver, glob, waiting, running, kv string
	}{
		{"sglang", "sglang/*.txt", "sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage"},
		{"llama_cpp", "llamacpp/*.txt", "llamacpp:requests_deferred", "llamacpp:requests_processing", "llamacpp:kv_cache_usage_ratio"},
	}
	for _, c := range cases {
		for _, rel := range fixtures.Glob(t, c.glob) {
			t.Run(rel, func(t *testing.T) {
				t.Parallel()
				body := fixtures.Read(t, rel)
				srv := engine(t, body)
				sink := newOTLPSink(t)
				block := fmt.Sprintf("%s:\n    endpoint: %s\n    collection_interval: 300ms", c.receiver, srv.URL)
				startCollector(t, pipelineConfig(c.receiver, block, sink.URL))
				md := sink.waitFor(t, schema.MetricLLMSchedulerRequestsRunning, 30*time.Second)
				assert.Equal(t, strings.ReplaceAll(c.receiver, "-", "_"), md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
				for wire, canonical := range map[string]string{c.waiting: schema.MetricLLMSchedulerRequestsWaiting,
					c.running: schema.MetricLLMSchedulerRequestsRunning, c.kv: schema.MetricLLMKVCacheUtilization} {
					got := find(md, canonical)
					require.Len(t, got, 1, canonical)
					assert.Equal(t, rawValues(fixtures.Samples(body, wire)), gaugeValues(got[0]), "%s from %s", canonical, wire)
				}
				assert.Empty(t, find(md, c.running), "the vendor original is replaced")
			})
		}
	}
}
