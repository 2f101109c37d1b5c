package fleetstate

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// regime is a replica's steady state from a time on: levels, and rates for its counters.
type regime struct {
	from                    float64 // s
	running, waiting, kv    float64
	queriesPerS, hitShare   float64 // prefix-cache tokens looked up per second, and the share found
	firstTokensPerS, ttft   float64 // requests getting a first token per second, and their mean wait (s)
	preemptionsPerS, gpuUse float64
	throttle                []string
}

// scenario integrates regimes into cumulative counters, as an engine exports them.
type scenario []regime

func (sc scenario) at(sec float64) regime {
	r := sc[0]
	for _, next := range sc {
		if sec >= next.from {
			r = next
		}
	}
	return r
}

// scrape is the engine's state at sec: the levels of its regime, and the counters grown since the first one.
func (sc scenario) scrape(_ string, sec float64) map[string]float64 {
	var queries, hits, firstTokens, ttftSum, preemptions float64
	for i, r := range sc {
		end := sec
		if i+1 < len(sc) && sc[i+1].from < end {
			end = sc[i+1].from
		}
		if d := end - r.from; d > 0 {
			queries += d * r.queriesPerS
			hits += d * r.queriesPerS * r.hitShare
			firstTokens += d * r.firstTokensPerS
			ttftSum += d * r.firstTokensPerS * r.ttft
			preemptions += d * r.preemptionsPerS
		}
	}
	now := sc.at(sec)
	return map[string]float64{
		schema.MetricLLMSchedulerRequestsRunning: now.running, schema.MetricLLMSchedulerRequestsWaiting: now.waiting,
		schema.MetricLLMKVCacheUtilization: now.kv, schema.MetricLLMPrefixCacheQueries: queries, schema.MetricLLMPrefixCacheHits: hits,
		schema.MetricLLMSchedulerPreemptions: preemptions, "ttft.count": firstTokens, "ttft.sum": ttftSum,
	}
}

// observe feeds the scenario's scrapes of replica r1 (and of its GPU) every step seconds over [from, to];
// each is followed by after(sec), where the caller marks what it knows.
func (sc scenario) observe(s *Store, from, to, step float64, after func(sec float64)) {
	for sec := from; sec <= to+1e-9; sec += step {
		v := sc.scrape("r1", sec)
		ttftCount, ttftSum := v["ttft.count"], v["ttft.sum"]
		delete(v, "ttft.count")
		delete(v, "ttft.sum")
		s.Observe(fleetstatetest.WithTTFT(fleetstatetest.Engine("r1", "llama-70b", sec, v), ttftSum, uint64(math.Round(ttftCount))))
		now := sc.at(sec)
		s.Observe(fleetstatetest.GPU("GPU-0", "r1", sec, now.gpuUse, now.throttle, 0))
		if after != nil {
			after(sec)
		}
	}
}

func TestUsualLevelsComeFromHealthyTime(t *testing.T) {
	healthy := regime{from: -1e6, running: 8, queriesPerS: 1000, hitShare: 0.8, firstTokensPerS: 2, ttft: 0.2}
	incident := regime{from: -1800, running: 30, waiting: 20, queriesPerS: 1000, hitShare: 0.1, firstTokensPerS: 2, ttft: 3}
	markIncident := func(s *Store) func(float64) {
		return func(sec float64) {
			if sec >= incident.from {
				s.MarkUnhealthy("r1", at(incident.from), at(sec)) // as the caller would, while the incident is open
			}
		}
	}
	for _, tc := range []struct {
		name                     string
		start                    float64 // when the store first sees the replica
		mark                     bool
		running, hitRatio, ttft  float64
		allNaN                   bool
		hitRatioDelta, ttftDelta float64
	}{
		// 20 healthy minutes, then a 30-minute incident: the 10-minute window holds nothing but the incident.
		{name: "30-minute incident marked, 10-minute window", start: -3000, mark: true, running: 8, hitRatio: 0.8, ttft: 0.2},
		// Marks are what keeps an incident out; without them it outweighs the 20 healthy minutes. Over time t
		// (s) each counts 2^(t/7200): (0.8*0.0917 + 0.1*0.1591) / 0.2508 for the hit ratio, likewise TTFT.
		{name: "the same incident unmarked", start: -3000, running: 30, hitRatio: 0.356, ttft: 1.976, hitRatioDelta: 0.005, ttftDelta: 0.02},
		{name: "no healthy time at all", start: -1800, mark: true, allNaN: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: 10 * time.Minute})
			var after func(float64)
			if tc.mark {
				after = markIncident(s)
			}
			scenario{healthy, incident}.observe(s, tc.start, 0, 10, after)
			sum := s.Summarize("r1", at(-5), at(0))
			require.True(t, sum.HasEngine)
			assert.Equal(t, 30.0, sum.RunningMax, "the request ran in the incident")
			if tc.allNaN {
				for name, v := range map[string]float64{"running": sum.RunningUsual, "hit ratio": sum.PrefixHitRatioUsual, "ttft": sum.TTFTUsual} {
					assert.True(t, math.IsNaN(v), "%s usual must be unknown, not the incident: got %v", name, v)
				}
				return
			}
			assert.InDelta(t, tc.running, sum.RunningUsual, 1e-9)
			assert.InDelta(t, tc.hitRatio, sum.PrefixHitRatioUsual, math.Max(tc.hitRatioDelta, 1e-9))
			assert.InDelta(t, tc.ttft, sum.TTFTUsual, math.Max(tc.ttftDelta, 1e-9))
		})
	}
}

func TestUnhealthyMarksStayBounded(t *testing.T) {
	s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: time.Minute})
	sc := scenario{{from: -1e6, running: 4, queriesPerS: 100, hitShare: 0.5}}
	sc.observe(s, 0, 3600, 1, func(sec float64) {
		if int(sec)%2 == 0 { // a slow request every other second, none of them overlapping
			s.MarkUnhealthy("r1", at(sec-0.9), at(sec-0.8))
		}
	})
	assert.LessOrEqual(t, len(s.replicas["r1"].unhealthy), maxUnhealthyMarks)
	assert.Equal(t, 4.0, s.Summarize("r1", at(3590), at(3591)).RunningUsual)
	s.MarkUnhealthy("nobody", at(0), at(1)) // an unknown replica: nothing to mark
}

func TestPrefixHitRatioWindowSizedByTheData(t *testing.T) {
	for _, tc := range []struct {
		name        string
		queriesPerS float64
		collapseAt  float64
		// wanted: the ratio, the seconds it covers and how many lie before the bracket; the bracket's own.
		ratio, window, widened, bracket float64
		unknown                         bool
	}{
		// Busy replica, 1 s scrapes: the two scrapes around the request hold thousands of tokens.
		{name: "collapse 10 s before the request", queriesPerS: 2000, collapseAt: -10, ratio: 0.02, window: 2, widened: 0, bracket: 0.02},
		// 50 tokens a second: the bracket's 100 are too few, so it reaches back 4 scrapes to 300, across the
		// collapse a second before; the bracket alone shows the new regime.
		{name: "quiet replica, collapse just before", queriesPerS: 50, collapseAt: -1, ratio: (120 + 3) / 300.0, window: 6, widened: 4, bracket: 0.02},
		// 2 tokens a second: a minute back holds 120, not a ratio.
		{name: "too few tokens even a minute back", queriesPerS: 2, collapseAt: -10, unknown: true, bracket: 0.02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: 10 * time.Minute})
			sc := scenario{
				{from: -1e6, running: 8, queriesPerS: tc.queriesPerS, hitShare: 0.8},
				{from: tc.collapseAt, running: 8, queriesPerS: tc.queriesPerS, hitShare: 0.02},
			}
			sc.observe(s, -600, 3, 1, nil)
			sum := s.Summarize("r1", at(0.3), at(1.7))
			assert.InDelta(t, 0.8, sum.PrefixHitRatioUsual, 0.03, "ten healthy minutes against seconds of collapse")
			assert.InDelta(t, tc.bracket, sum.PrefixHitRatioBracket, 1e-9)
			if tc.unknown {
				assert.True(t, math.IsNaN(sum.PrefixHitRatio), "got %v", sum.PrefixHitRatio)
				return
			}
			assert.InDelta(t, tc.ratio, sum.PrefixHitRatio, 1e-9)
			assert.InDelta(t, tc.window, sum.PrefixHitRatioWindow, 1e-9)
			assert.InDelta(t, tc.widened, sum.PrefixHitRatioWidened, 1e-9)
			assert.GreaterOrEqual(t, sum.PrefixQueries, 256.0)
		})
	}
}

func TestLevelsDuringTheRequestOnly(t *testing.T) {
	calm := regime{from: -1e6, running: 10, waiting: 3, kv: 0.5, gpuUse: 0.3}
	// From 11 s on the replica is saturated; the 11 s scrape is the first to show it.
	pressure := regime{from: 11, running: 64, waiting: 40, kv: 0.98, preemptionsPerS: 2, gpuUse: 1, throttle: []string{"hw_slowdown"}}
	s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: 10 * time.Minute})
	scenario{calm, pressure}.observe(s, -60, 20, 1, nil)
	for _, tc := range []struct {
		name                          string
		from, to                      float64
		kv, waiting, running, gpuMean float64
		throttled                     bool
		stateAge                      float64
	}{
		// Ends half a second before the 11 s scrape: that scrape closes its counters, it does not describe it.
		{name: "ends one scrape before the change", from: 2, to: 10.5, kv: 0.5, waiting: 3, running: 10, gpuMean: 0.3, stateAge: 0.5},
		// No scrape inside: the one it started in (10 s) describes it, not the next (11 s).
		{name: "between two scrapes", from: 10.2, to: 10.6, kv: 0.5, waiting: 3, running: 10, gpuMean: 0.3, stateAge: 0.6},
		{name: "ends at the change", from: 2, to: 11, kv: 0.98, waiting: 40, running: 64, gpuMean: (9*0.3 + 1) / 10, throttled: true, stateAge: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum := s.Summarize("r1", at(tc.from), at(tc.to))
			assert.True(t, sum.Complete)
			assert.Equal(t, tc.kv, sum.KVUtilizationMax)
			assert.Equal(t, tc.waiting, sum.WaitingMax)
			assert.Equal(t, tc.running, sum.RunningMax)
			assert.InDelta(t, tc.gpuMean, sum.GPUUtilizationMean, 1e-9)
			assert.Equal(t, tc.throttled, len(sum.ThrottleReasons) > 0, "%v", sum.ThrottleReasons)
			assert.InDelta(t, tc.stateAge, sum.StateAge, 1e-9)
		})
	}
}

func TestGPUOnlyResourceIsNoReplica(t *testing.T) {
	// A sidecar scrapes its engine and its node's dcgm-exporter with the stock prometheus receiver: the
	// exporter's resource is its own host:port, which no engine reports under.
	s := newStore()
	for _, sec := range []float64{0, 10} {
		s.Observe(engineScrape("localhost:8000", sec, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
		s.Observe(fleetstatetest.GPUPoints("10.0.0.5:9400", sec, map[string]float64{"GPU-0": 0.9, "GPU-1": 0.7}))
	}
	assert.Equal(t, []string{"localhost:8000"}, s.Replicas(), "GPU metrics alone make no replica")
	sum := s.Summarize("localhost:8000", at(0), at(10))
	assert.True(t, sum.HasGPU, "the lone replica has its node's GPUs")
	assert.Equal(t, map[string]float64{"GPU-0": 0.9, "GPU-1": 0.7}, sum.GPUUtilization)
	assert.Empty(t, s.UnattributedGPUs())

	// A second engine replica: nobody can tell whose the GPUs are, and the store says so.
	s.Observe(engineScrape("localhost:8001", 10, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0}))
	assert.False(t, s.Summarize("localhost:8000", at(0), at(10)).HasGPU)
	assert.Equal(t, []string{"GPU-0", "GPU-1"}, s.UnattributedGPUs())
}

func TestStateAgeSaysHowOldTheEvidenceIs(t *testing.T) {
	s := newStore()
	for sec := -120.0; sec <= -60; sec += 5 { // then the engine goes unscraped
		s.Observe(engineScrape("r1", sec, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: -sec}))
	}
	for _, tc := range []struct {
		name            string
		from, to        float64
		age, waitingMax float64
		complete        bool
	}{
		{name: "during the outage", from: -5, to: 0, age: 60, waitingMax: 60},
		{name: "a scrape at the end", from: -90, to: -80, age: 0, waitingMax: 90, complete: true},
		// Scrapes at -75 s and -70 s: the request ran in the state of the first, 4 s before its end.
		{name: "between scrapes", from: -73, to: -71, age: 4, waitingMax: 75, complete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum := s.Summarize("r1", at(tc.from), at(tc.to))
			assert.True(t, sum.HasEngine)
			assert.Equal(t, tc.complete, sum.Complete)
			assert.InDelta(t, tc.age, sum.StateAge, 1e-9)
			assert.Equal(t, tc.waitingMax, sum.WaitingMax)
		})
	}
	assert.True(t, math.IsNaN(s.Summarize("nobody", at(0), at(1)).StateAge))
}

// A throttling longer than the window still reads as throttling: the peak the clock is compared with is the
// GPU's own, kept past the window (the long-throttle accuracy case named decode_contention after ten
// minutes, once every clock in the window was the throttled one).
func TestThrottlingLongerThanTheWindow(t *testing.T) {
	s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: 15 * time.Minute})
	for sec := 0.0; sec <= 35*60; sec += 10 {
		clock := 1.98e9
		if sec >= 5*60 {
			clock = 0.99e9
		}
		s.Observe(fleetstatetest.Engine("r1", "m", sec, map[string]float64{schema.MetricLLMSchedulerRequestsRunning: 8}))
		s.Observe(fleetstatetest.GPUWith(sec, fleetstatetest.GPUState{ID: "GPU-0", Owner: "r1", Utilization: 0.9, SMClockHz: clock}))
	}
	sum := s.Summarize("r1", fleetstatetest.At(34*60), fleetstatetest.At(34*60+5))
	assert.InDelta(t, 0.5, sum.SMClockRatio, 0.01, "29 minutes into the throttling, 14 past the window")
	s.Observe(fleetstatetest.GPUWith(35*60+10, fleetstatetest.GPUState{ID: "GPU-0", Owner: "r1", Utilization: 0.9, SMClockHz: 1e15}))
	sum = s.Summarize("r1", fleetstatetest.At(35*60), fleetstatetest.At(35*60+10))
	assert.InDelta(t, 0.5, sum.SMClockRatio, 0.01, "an impossible reading sets no peak")
}

// Marks that add nothing to what is already marked, as the slow requests of one incident do, leave the usual
// levels exactly as one mark of the whole incident would (the store skips the recomputation for them).
func TestMarksThatChangeNothingSkipNothing(t *testing.T) {
	build := func() *Store {
		s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}})
		queries, hits := 0.0, 0.0
		for sec := 0.0; sec <= 300; sec += 10 {
			running, ratio := 8.0, 0.7
			if sec > 100 {
				running, ratio = 40, 0.1
			}
			queries += 10000
			hits += 10000 * ratio
			s.Observe(fleetstatetest.Engine("r1", "m", sec, map[string]float64{
				schema.MetricLLMSchedulerRequestsRunning: running,
				schema.MetricLLMPrefixCacheQueries:       queries, schema.MetricLLMPrefixCacheHits: hits,
			}))
		}
		return s
	}
	incremental, once := build(), build()
	// slow requests of 3 s, each ending half a second after the last: the first starts at a snapshot
	for end := 103.0; end <= 300; end += 0.5 {
		incremental.MarkUnhealthy("r1", fleetstatetest.At(end-3), fleetstatetest.At(end))
	}
	once.MarkUnhealthy("r1", fleetstatetest.At(100), fleetstatetest.At(300))
	a := incremental.Summarize("r1", fleetstatetest.At(300), fleetstatetest.At(300))
	b := once.Summarize("r1", fleetstatetest.At(300), fleetstatetest.At(300))
	assert.Equal(t, 8.0, b.RunningUsual, "the incident's 40 running is not the usual")
	assert.InDelta(t, 0.7, b.PrefixHitRatioUsual, 1e-9)
	assert.Equal(t, b.RunningUsual, a.RunningUsual)
	assert.InDelta(t, b.PrefixHitRatioUsual, a.PrefixHitRatioUsual, 1e-12)
}
