package ncclreceiver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/golden"
	"github.com/servescope/servescope/internal/schema"
)

// The reader runs on the clock it is given, not the machine's: its metrics carry that moment, and a replica
// goes quiet when that clock, not the wall clock, has run past expect_records_within.
func TestFileReaderRunsOnTheCallersClock(t *testing.T) {
	dir := copyFixture(t, "tp4-straggler")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.ExpectRecordsWithin = time.Minute
	cfg.Replicas = []ReplicaRule{{
		Files: filepath.Join(dir, "*"), ServiceInstanceID: "a:8000", Engine: "vllm",
		TensorParallelSize: 4, AllReduce: "nccl",
	}}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // the fixture's records are from this moment
	r, err := NewFileReader(cfg, zap.NewNop(), start)
	require.NoError(t, err)

	at := start.Add(time.Second)
	md, caughtUp := r.Read(at)
	assert.True(t, caughtUp)
	require.Positive(t, md.DataPointCount())
	assert.Equal(t, md.DataPointCount(), golden.FixClock(md, pcommon.NewTimestampFromTime(at), 0), "every point is stamped with the moment read")
	skew := points(md, schema.MetricLLMCollectiveArrivalSkew)
	require.Len(t, skew, 1)
	assert.Equal(t, int64(2), skew[0].attrs[schema.AttrLLMCollectiveLateRank], "the same late rank the receiver names")
	obs := points(md, schema.MetricLLMCollectiveObservability)
	require.Len(t, obs, 1)
	assert.Equal(t, "records", obs[0].attrs[schema.AttrLLMCollectiveObservableReason])

	// Two minutes later on the caller's clock (an instant later on the machine's), with no new record.
	md, _ = r.Read(start.Add(2 * time.Minute))
	obs = points(md, schema.MetricLLMCollectiveObservability)
	require.Len(t, obs, 1)
	assert.Equal(t, "no_records", obs[0].attrs[schema.AttrLLMCollectiveObservableReason])
}

func TestFileReaderRejectsAnInvalidConfig(t *testing.T) {
	cfg := baseConfig("*.log")
	cfg.Replicas = []ReplicaRule{{Files: "*", Engine: "vllm"}} // no service_instance_id
	_, err := NewFileReader(cfg, zap.NewNop(), time.Now())
	require.ErrorContains(t, err, "replicas[0].service_instance_id: required")
}
