package fleetstate

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

var at = fleetstatetest.At

func engineScrape(replica string, sec float64, values map[string]float64) pmetric.Metrics {
	return fleetstatetest.Engine(replica, "llama-70b", sec, values)
}

var gpuScrape = fleetstatetest.GPU

func newStore() *Store {
	return New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID, schema.AttrServerAddress}, Window: 10 * time.Minute})
}

func TestSummaryOverARequestsLifetime(t *testing.T) {
	s := newStore()
	// The queue grows, KV fills, preemptions and prefix-cache counters move.
	s.Observe(engineScrape("r1", -200, map[string]float64{schema.MetricLLMPrefixCacheQueries: 0, schema.MetricLLMPrefixCacheHits: 0}))
	s.Observe(engineScrape("r1", 0, map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting: 2, schema.MetricLLMSchedulerRequestsRunning: 10,
		schema.MetricLLMKVCacheUtilization: 0.5, schema.MetricLLMSchedulerPreemptions: 3, schema.MetricLLMPrefixCacheQueries: 1000, schema.MetricLLMPrefixCacheHits: 700,
	}))
	s.Observe(engineScrape("r1", 60, map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting: 5, schema.MetricLLMSchedulerRequestsRunning: 12,
		schema.MetricLLMKVCacheUtilization: 0.7, schema.MetricLLMSchedulerPreemptions: 3, schema.MetricLLMPrefixCacheQueries: 2000, schema.MetricLLMPrefixCacheHits: 1400,
	}))
	s.Observe(engineScrape("r1", 70, map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting: 11, schema.MetricLLMSchedulerRequestsRunning: 16,
		schema.MetricLLMKVCacheUtilization: 0.97, schema.MetricLLMSchedulerPreemptions: 7, schema.MetricLLMPrefixCacheQueries: 3000, schema.MetricLLMPrefixCacheHits: 1500,
	}))
	s.Observe(engineScrape("r1", 80, map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting: 3, schema.MetricLLMSchedulerRequestsRunning: 12,
		schema.MetricLLMKVCacheUtilization: 0.6, schema.MetricLLMSchedulerPreemptions: 9, schema.MetricLLMPrefixCacheQueries: 4000, schema.MetricLLMPrefixCacheHits: 1600,
	}))

	sum := s.Summarize("r1", at(62), at(75)) // arrives after the 60 s scrape, ends before the 80 s one
	assert.Equal(t, "llama-70b", sum.Model)
	assert.Equal(t, "vllm", sum.Engine)
	assert.True(t, sum.HasEngine)
	assert.True(t, sum.Complete, "the 80 s scrape covers the end")
	assert.Equal(t, 5.0, sum.WaitingAtArrival)
	assert.Equal(t, 11.0, sum.WaitingMax)
	assert.InDelta(t, 2.0, sum.QueueGrowthPerMinute, 1e-9, "(5+1)/(2+1) over exactly one minute")
	assert.Equal(t, 16.0, sum.RunningMax)
	assert.Equal(t, 12.0, sum.RunningUsual)
	assert.Equal(t, 0.97, sum.KVUtilizationMax)
	assert.Equal(t, 6.0, sum.Preemptions, "3 -> 7 -> 9 between the 60 s and 80 s scrapes")
	assert.InDelta(t, 0.1, sum.PrefixHitRatio, 1e-9, "the bracketing 60 s and 80 s scrapes hold enough queries: 1600-1400 hits of 4000-2000")
	assert.Equal(t, 0.0, sum.PrefixHitRatioWidened, "not widened")
	assert.InDelta(t, 0.4, sum.PrefixHitRatioUsual, 0.005, "all healthy: 1600 hits of 4000 queries, the newer weighing a little more")

	open := s.Summarize("r1", at(79), at(85))
	assert.False(t, open.Complete, "no scrape after the end yet: the caller may wait")

	before := s.Summarize("r1", at(-500), at(-400))
	assert.False(t, before.HasEngine, "a request from before the window has no state")
	assert.True(t, math.IsNaN(before.WaitingAtArrival), "state from minutes later is not its state")
}

func TestCounterResetIsAnEngineRestartNotNegativeGrowth(t *testing.T) {
	s := newStore()
	s.Observe(engineScrape("r1", 0, map[string]float64{schema.MetricLLMSchedulerPreemptions: 50}))
	s.Observe(engineScrape("r1", 10, map[string]float64{schema.MetricLLMSchedulerPreemptions: 2}))
	s.Observe(engineScrape("r1", 20, map[string]float64{schema.MetricLLMSchedulerPreemptions: 5}))
	assert.Equal(t, 5.0, s.Summarize("r1", at(1), at(19)).Preemptions)
}

func TestMissingMetricsStayUnknown(t *testing.T) {
	s := newStore()
	s.Observe(engineScrape("r1", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 2}))
	sum := s.Summarize("r1", at(1), at(2))
	assert.Equal(t, 2.0, sum.WaitingAtArrival)
	for name, v := range map[string]float64{
		"kv": sum.KVUtilizationMax, "preemptions": sum.Preemptions, "prefix": sum.PrefixHitRatio,
		"growth": sum.QueueGrowthPerMinute, "gpu": sum.GPUUtilizationMean,
	} {
		assert.True(t, math.IsNaN(v), "%s must be unknown, got %v", name, v)
	}
	assert.False(t, sum.HasGPU)

	none := s.Summarize("nobody", at(1), at(2))
	assert.False(t, none.HasEngine)
	assert.True(t, math.IsNaN(none.WaitingAtArrival))
}

func TestGPUsJoinTheirReplica(t *testing.T) {
	s := newStore()
	s.Observe(engineScrape("r1", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	// Sidecar: one replica, GPUs without an owner are its GPUs.
	s.Observe(gpuScrape("GPU-a", "", 0, 0.9, []string{"gpu_idle"}, 0))
	s.Observe(gpuScrape("GPU-a", "", 10, 0.5, []string{"hw_slowdown"}, 2))
	sum := s.Summarize("r1", at(0), at(10))
	assert.True(t, sum.HasGPU)
	assert.InDelta(t, 0.7, sum.GPUUtilizationMean, 1e-9)
	assert.Equal(t, []string{"hw_slowdown"}, sum.ThrottleReasons, "idle is not throttling")
	assert.Equal(t, 2.0, sum.XIDErrors)

	// Two replicas: a GPU joins the one its resource or its processes name, and only that one.
	s.Observe(engineScrape("r2", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	s.Observe(gpuScrape("GPU-b", "", 10, 0.2, []string{"sw_thermal"}, 0, "r2"))
	s.Observe(gpuScrape("GPU-c", "r1", 10, 0.4, nil, 0))
	assert.Equal(t, []string{"sw_thermal"}, s.Summarize("r2", at(0), at(10)).ThrottleReasons)
	r1 := s.Summarize("r1", at(0), at(10))
	assert.Equal(t, []string{}, append([]string{}, r1.ThrottleReasons...), "GPU-a is unattributed now that two replicas exist; GPU-c is r1's and calm")
	assert.InDelta(t, 0.4, r1.GPUUtilizationMean, 1e-9)
}

func TestGPUsNamedOnTheirDataPoints(t *testing.T) {
	// dcgm-exporter's shape after llm_normalize: one resource (the scrape target), hw.id per series.
	s := newStore()
	s.Observe(engineScrape("r1", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	s.Observe(engineScrape("r2", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	for _, sec := range []float64{0, 10} {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, "r2") // the collector was told whose node this is
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(schema.MetricHwGPUUtilization)
		points := m.SetEmptyGauge().DataPoints()
		for i, u := range []float64{0.9, 0.3} {
			dp := points.AppendEmpty()
			dp.SetTimestamp(pcommon.Timestamp(at(sec)))
			dp.SetDoubleValue(u)
			dp.Attributes().PutStr(schema.AttrHwID, fmt.Sprintf("GPU-%d", i))
		}
		s.Observe(md)
	}
	sum := s.Summarize("r2", at(1), at(9))
	assert.Equal(t, map[string]float64{"GPU-0": 0.9, "GPU-1": 0.3}, sum.GPUUtilization)
	assert.False(t, s.Summarize("r1", at(1), at(9)).HasGPU)
}

func TestResolveJoinsASidecarTrivially(t *testing.T) {
	s := newStore()
	_, ok := s.Resolve("anything")
	assert.False(t, ok)
	s.Observe(engineScrape("localhost:8000", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	got, ok := s.Resolve("3f9c-sdk-instance-id")
	require.True(t, ok)
	assert.Equal(t, "localhost:8000", got)
	s.Observe(engineScrape("localhost:8001", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	_, ok = s.Resolve("3f9c-sdk-instance-id")
	assert.False(t, ok, "two replicas: no guessing")
	got, _ = s.Resolve("localhost:8001")
	assert.Equal(t, "localhost:8001", got)
}

func TestStateIsBounded(t *testing.T) {
	s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: time.Hour, MaxSnapshots: 8, MaxReplicas: 3})
	for i := 0; i < 100; i++ {
		s.Observe(engineScrape("r1", float64(i), map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: float64(i)}))
	}
	assert.Equal(t, 8, s.replicas["r1"].snaps.n)
	assert.Equal(t, 92.0, s.Summarize("r1", at(50), at(95)).WaitingAtArrival, "the oldest kept is scrape 92")

	for i := 0; i < 10; i++ {
		s.Observe(engineScrape(fmt.Sprintf("other-%d", i), 200+float64(i), map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 1}))
	}
	assert.Equal(t, []string{"other-7", "other-8", "other-9"}, s.Replicas(), "the replicas seen longest ago go first")

	w := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: 30 * time.Second})
	for i := 0; i < 10; i++ {
		w.Observe(engineScrape("r1", float64(i*10), map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: float64(i)}))
	}
	assert.Equal(t, 4, w.replicas["r1"].snaps.n, "60..90 s: older than the 30 s window is gone")
}

func TestLateAndRepeatedBatches(t *testing.T) {
	s := newStore()
	s.Observe(engineScrape("r1", 10, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 4}))
	s.Observe(engineScrape("r1", 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 99})) // late
	s.Observe(engineScrape("r1", 10, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 5})) // retried
	assert.Equal(t, 1, s.replicas["r1"].snaps.n)
	assert.Equal(t, 5.0, s.Summarize("r1", at(11), at(12)).WaitingAtArrival)
}
