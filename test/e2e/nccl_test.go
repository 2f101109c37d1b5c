package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/schema"
)

// The nccl receiver in the built binary: Inspector records in, the straggler named on the way out, and the
// offsets checkpointed through file_storage so that a restarted collector reads only what is new.
func TestNCCLStragglerThroughTheBinary(t *testing.T) {
	files, state := t.TempDir(), t.TempDir()
	fixtures, err := filepath.Glob("../../receiver/ncclreceiver/testdata/tp4-straggler/*.log")
	require.NoError(t, err)
	require.Len(t, fixtures, 4)
	for _, f := range fixtures {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(files, filepath.Base(f)), b, 0o644))
	}
	config := func(url string) string {
		return fmt.Sprintf(`extensions:
  file_storage:
    directory: %s
receivers:
  nccl:
    include: [%s/*.log]
    collection_interval: 1s
    gpu_lookup: none
    storage: file_storage
    replicas:
      - files: "%s/*"
        service_instance_id: a:8000
        engine: vllm
        tensor_parallel_size: 4
        all_reduce: nccl
`, state, files, files) + sinkBlock(url) + `  extensions: [file_storage]
  pipelines:
    metrics: {receivers: [nccl], exporters: [otlp_http]}
`
	}
	sink := newOTLPSink(t)
	col := startCollector(t, config(sink.URL))
	md := sink.waitFor(t, schema.MetricLLMCollectiveArrivalSkew, 30*time.Second)
	skew := find(md, schema.MetricLLMCollectiveArrivalSkew)[0].Histogram().DataPoints()
	require.Equal(t, 1, skew.Len())
	late, ok := skew.At(0).Attributes().Get(schema.AttrLLMCollectiveLateRank)
	require.True(t, ok)
	assert.Equal(t, int64(2), late.Int())
	assert.Equal(t, uint64(20), skew.At(0).Count())
	assert.Equal(t, 1, col.count("not a record"), "rank 1's broken lines: one warning")
	col.stop(t)

	// Restart on the same storage: nothing is read twice, so the new collector counts zero operations until
	// more are written.
	sink2 := newOTLPSink(t)
	col2 := startCollector(t, config(sink2.URL))
	md = sink2.waitFor(t, schema.MetricLLMCollectiveObservability, 30*time.Second)
	assert.Empty(t, find(md, schema.MetricLLMCollectiveDuration), "records read before the restart are not counted again")
	assert.Equal(t, 0, col2.count("not a record"))
}
