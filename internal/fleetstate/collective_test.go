package fleetstate

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// twoRanks is replica r1's tensor-parallel pair of cumulative timings: ops all-reduces each, rank 0 spending
// opSeconds0.
func twoRanks(ops uint64, opSeconds0, opSeconds1 float64, skews uint64, skewSeconds float64, observable bool) fleetstatetest.Collectives {
	return fleetstatetest.Collectives{
		Replica: "r1", Observable: observable, Reason: map[bool]string{true: "records", false: "custom_all_reduce"}[observable],
		Ranks: []fleetstatetest.CollectiveRank{
			{GPU: "GPU-a", PID: 10, TPRank: 0, Operations: ops, OperationSeconds: opSeconds0},
			{GPU: "GPU-b", PID: 11, TPRank: 1, Operations: ops, OperationSeconds: opSeconds1},
		},
		Skews: skews, SkewSeconds: skewSeconds, LateRank: 1,
	}
}

func TestCollectiveWaitFromArrivalSkew(t *testing.T) {
	s := newStore()
	// Cumulative since the receiver started; the first batch is the baseline.
	s.Observe(fleetstatetest.CollectivesAt(0, twoRanks(1000, 2, 1, 1000, 0.5, true)))
	// 10 s later: 2000 more all-reduces; rank 0 waited 3 s in all for rank 1 (skew 1.5 ms per collective).
	s.Observe(fleetstatetest.CollectivesAt(10, twoRanks(3000, 6, 2, 3000, 3.5, true)))

	sum := s.Summarize("r1", at(4), at(9))
	assert.Equal(t, 1.0, sum.CollectiveObservable)
	assert.Equal(t, "records", sum.CollectiveObservableReason)
	assert.InDelta(t, 0.3, sum.CollectiveWaitShare, 1e-9, "3 s of waiting over 10 s on one communicator")
	assert.InDelta(t, 0.0015, sum.CollectiveSkewMean, 1e-12)
	assert.InDelta(t, 4000.0, sum.CollectiveOperations, 1e-9, "2000 per rank")
	assert.InDelta(t, 5.0/4000, sum.CollectiveMeanDuration, 1e-12)
	assert.Equal(t, "tp rank 1, communicator tp0", sum.CollectiveLateRank)
	assert.Equal(t, 1.0, sum.CollectiveLateShare)
}

func TestCollectiveBlindReplicaSaysSo(t *testing.T) {
	s := newStore()
	s.Observe(fleetstatetest.CollectivesAt(0, twoRanks(0, 0, 0, 0, 0, false)))
	s.Observe(fleetstatetest.CollectivesAt(10, twoRanks(0, 0, 0, 0, 0, false)))
	sum := s.Summarize("r1", at(4), at(9))
	assert.Equal(t, 0.0, sum.CollectiveObservable)
	assert.Equal(t, "custom_all_reduce", sum.CollectiveObservableReason)
	assert.True(t, math.IsNaN(sum.CollectiveWaitShare), "no skew measured: no share, not zero")

	none := s.Summarize("r2", at(4), at(9))
	assert.True(t, math.IsNaN(none.CollectiveObservable), "a replica without an nccl receiver is unknown, not blind")
}

func TestCollectiveCountersResetAndSplitBatches(t *testing.T) {
	s := newStore()
	s.Observe(fleetstatetest.CollectivesAt(0, twoRanks(1000, 2, 1, 1000, 1, true)))
	// The receiver restarted: cumulative values start over, and the new values are all growth.
	s.Observe(fleetstatetest.CollectivesAt(10, twoRanks(500, 1, 0.5, 500, 2, true)))
	sum := s.Summarize("r1", at(9), at(10))
	assert.InDelta(t, 0.2, sum.CollectiveWaitShare, 1e-9, "2 s of skew after the restart over 10 s")

	// The same batch split in two (a batch processor in between): each series is counted once.
	md := fleetstatetest.CollectivesAt(20, twoRanks(1500, 3, 1.5, 1500, 3, true))
	first, second := pmetric.NewMetrics(), pmetric.NewMetrics()
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		dst := first
		if i%2 == 1 {
			dst = second
		}
		md.ResourceMetrics().At(i).CopyTo(dst.ResourceMetrics().AppendEmpty())
	}
	s.Observe(first)
	s.Observe(second)
	later := s.Summarize("r1", at(19), at(20))
	require.False(t, math.IsNaN(later.CollectiveWaitShare))
	assert.InDelta(t, 2000.0, later.CollectiveOperations, 1e-9, "the split batch: 1000 more per rank, each half counted once")
	assert.InDelta(t, 1.0/10, later.CollectiveWaitShare, 1e-9, "1 s of skew over the 10 s the batch covers")
	both := s.Summarize("r1", at(5), at(15))
	assert.InDelta(t, 3.0/20, both.CollectiveWaitShare, 1e-9, "a request across two batches sees both")
}

func TestGPUPositionsFromTheNVMLReceiver(t *testing.T) {
	s := newStore()
	s.Observe(engineScrape("r1", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	for i, id := range []string{"GPU-a", "GPU-b"} {
		md := gpuScrape(id, "r1", 0, 0.9, nil, 0)
		res := md.ResourceMetrics().At(0).Resource().Attributes()
		res.PutInt(schema.AttrLLMParallelTpRank, 0)
		res.PutInt(schema.AttrLLMParallelPpRank, int64(i))
		res.PutStr(schema.AttrLLMParallelGroup, "r1/dp0/pp"+string(rune('0'+i)))
		s.Observe(md)
	}
	s.Observe(gpuScrape("GPU-c", "r1", 0, 0.9, nil, 0))
	sum := s.Summarize("r1", at(0), at(1))
	assert.Equal(t, map[string]GPUPosition{"GPU-a": {TPRank: 0, PPStage: 0, Group: "r1/dp0/pp0"}, "GPU-b": {TPRank: 0, PPStage: 1, Group: "r1/dp0/pp1"}}, sum.GPUPositions,
		"GPU-c has no position and is not listed")
}

// A pipeline that merges resources with equal attributes may put the receiver's observability gauge next to
// the engine's metrics: both are still read.
func TestCollectivesOnAnEngineResource(t *testing.T) {
	s := newStore()
	for _, sec := range []float64{0, 10} {
		md := engineScrape("r1", sec, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 3})
		obs := fleetstatetest.CollectivesAt(sec, fleetstatetest.Collectives{Replica: "r1", Observable: false, Reason: "no_records", LateRank: -1})
		obs.ResourceMetrics().At(0).ScopeMetrics().MoveAndAppendTo(md.ResourceMetrics().At(0).ScopeMetrics())
		s.Observe(md)
	}
	sum := s.Summarize("r1", at(4), at(9))
	assert.Equal(t, 3.0, sum.WaitingAtArrival)
	assert.Equal(t, 0.0, sum.CollectiveObservable)
	assert.Equal(t, "no_records", sum.CollectiveObservableReason)
}

// A series that appears after the replica's first batch (a new message size, a late rank first named) was
// born since the batch before: all of it is growth.
func TestCollectiveSeriesBornLaterCountsInFull(t *testing.T) {
	s := newStore()
	quiet := twoRanks(1000, 1, 1, 0, 0, true)
	quiet.LateRank = -1 // no skew series yet
	s.Observe(fleetstatetest.CollectivesAt(0, quiet))
	s.Observe(fleetstatetest.CollectivesAt(10, twoRanks(2000, 3, 2, 1000, 2.5, true)))
	sum := s.Summarize("r1", at(1), at(9))
	assert.InDelta(t, 0.25, sum.CollectiveWaitShare, 1e-9, "the late rank's first series: 2.5 s of skew over 10 s")
	assert.Equal(t, "tp rank 1, communicator tp0", sum.CollectiveLateRank)
}

// Beyond maxCollectiveSeries a replica's series are not followed, and none is forgotten to make room: a
// forgotten series would come back as new and count its whole history again.
func TestCollectiveSeriesBeyondTheCapAddNothing(t *testing.T) {
	s := newStore()
	many := func(sec float64) pmetric.Metrics {
		md := fleetstatetest.CollectivesAt(sec, twoRanks(1000, 1, 1, 1000, 1, true))
		skew := md.ResourceMetrics().At(1).ScopeMetrics().At(1).Metrics().At(0).Histogram().DataPoints()
		for i := 0; i < maxCollectiveSeries+1000; i++ {
			dp := skew.AppendEmpty()
			skew.At(0).CopyTo(dp)
			dp.Attributes().PutStr(schema.AttrLLMCollectiveCommunicator, fmt.Sprintf("c%d", i))
		}
		return md
	}
	for _, sec := range []float64{0, 10, 20} {
		s.Observe(many(sec))
	}
	sum := s.Summarize("r1", at(11), at(20))
	assert.True(t, math.IsNaN(sum.CollectiveWaitShare), "nothing grew: no skew, got share %v", sum.CollectiveWaitShare)
}

// Two collectors report on one replica (one per node, each with its own ranks), at their own moments: each
// batch covers the time since the same collector's previous one, and their communicators add up.
func TestCollectivesFromTwoNodes(t *testing.T) {
	s := newStore()
	node := func(host, comm string, _ float64, n int) fleetstatetest.Collectives {
		c := twoRanks(uint64(1000*n), float64(n), float64(n), uint64(1000*n), float64(n), true) // 1 s of skew per 10 s
		c.Host, c.Communicator = host, comm
		for i := range c.Ranks {
			c.Ranks[i].GPU = host + c.Ranks[i].GPU
		}
		return c
	}
	for n := 0; n < 4; n++ {
		sec := 10 * float64(n)
		s.Observe(fleetstatetest.CollectivesAt(sec, node("node-a", "tp-a", sec, n)))
		s.Observe(fleetstatetest.CollectivesAt(sec+0.3, node("node-b", "tp-b", sec+0.3, n)))
	}
	for _, w := range [][2]float64{{5, 30.3}, {10.1, 10.2}, {20.1, 20.2}} {
		sum := s.Summarize("r1", at(w[0]), at(w[1]))
		assert.InDelta(t, 0.1, sum.CollectiveWaitShare, 1e-9, "window %v", w)
	}
}

// A batch replayed late (an exporter's retry, queues with several consumers) counts nothing twice.
func TestCollectiveLateBatchCountsNothingTwice(t *testing.T) {
	s := newStore()
	batches := map[float64]pmetric.Metrics{}
	for n, sec := range []float64{0, 10, 20, 30} {
		batches[sec] = fleetstatetest.CollectivesAt(sec, twoRanks(uint64(1000*n), 1, 1, uint64(1000*n), 3*float64(n), true))
	}
	s.Observe(batches[0])
	s.Observe(batches[10])
	s.Observe(batches[20])
	s.Observe(batches[10]) // again, late
	s.Observe(batches[30])
	sum := s.Summarize("r1", at(21), at(29))
	assert.InDelta(t, 0.3, sum.CollectiveWaitShare, 1e-9, "3 s of skew over the 10 s from 20 s to 30 s")
}

// A batch split in two with each communicator's skew in a different half still counts both communicators.
func TestCollectiveSplitBatchKeepsEveryCommunicator(t *testing.T) {
	s := newStore()
	both := func(sec float64, n int) (pmetric.Metrics, pmetric.Metrics) {
		a := twoRanks(uint64(1000*n), 1, 1, uint64(1000*n), 2*float64(n), true)
		b := a
		a.Communicator, b.Communicator = "tp0", "tp1"
		b.Ranks = []fleetstatetest.CollectiveRank{{GPU: "GPU-c", PID: 12, TPRank: 0}, {GPU: "GPU-d", PID: 13, TPRank: 1}}
		return fleetstatetest.CollectivesAt(sec, a), fleetstatetest.CollectivesAt(sec, b)
	}
	for n, sec := range []float64{0, 10} {
		first, second := both(sec, n)
		s.Observe(first)
		s.Observe(second)
	}
	sum := s.Summarize("r1", at(1), at(9))
	assert.InDelta(t, 4.0/(10*2), sum.CollectiveWaitShare, 1e-9, "2 s of skew on each of two communicators over 10 s")
}

func TestCollectivesSettled(t *testing.T) {
	s := newStore()
	assert.True(t, s.CollectivesSettled("r1", at(5)), "no nccl receiver: nothing to wait for")
	s.Observe(fleetstatetest.CollectivesAt(0, twoRanks(0, 0, 0, 0, 0, true)))
	assert.False(t, s.CollectivesSettled("r1", at(5)), "the receiver reports: wait for its batch after the request")
	s.Observe(fleetstatetest.CollectivesAt(10, twoRanks(0, 0, 0, 0, 0, true)))
	assert.True(t, s.CollectivesSettled("r1", at(5)))
	assert.True(t, s.CollectivesSettled("r1", at(200)), "quiet for over a minute: not waited for")
}
