package fleetsim

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fixtures"
)

// testConfig is the default fleet with a fixed epoch, so that runs compare exactly.
func testConfig(t *testing.T, scenario string) Config {
	t.Helper()
	cfg := DefaultConfig()
	sc, err := LookupScenario(scenario)
	require.NoError(t, err)
	cfg.Scenario = sc
	cfg.Epoch = time.Unix(1_800_000_000, 0)
	return cfg
}

func runScenario(t *testing.T, scenario string) *Fleet {
	t.Helper()
	f, err := New(testConfig(t, scenario))
	require.NoError(t, err)
	f.RunToEnd()
	return f
}

func TestKVCachePrefixReuseAndLRUEviction(t *testing.T) {
	c := newKVCache(4, 16)
	a, ok := c.allocate(2, 0)
	require.True(t, ok)
	c.register(a[0], 11)
	c.register(a[1], 12)
	assert.InDelta(t, 0.5, c.usage(), 1e-9)
	c.release(a)
	assert.Zero(t, c.usage(), "released blocks are free, though still cached")

	// A request with the same leading content finds both blocks; a different second block stops the run.
	hashes := func(want ...uint64) func(int) uint64 { return func(i int) uint64 { return want[i] } }
	assert.Len(t, c.cachedPrefix(hashes(11, 12), 2), 2)
	assert.Len(t, c.cachedPrefix(hashes(11, 99), 2), 1)
	assert.Empty(t, c.cachedPrefix(hashes(99, 12), 2), "a hit must start at the first block")

	// Fresh allocations take never-used blocks first, then the least recently freed cached ones. The
	// request's tail block (12) was queued before its head (11), so it goes first.
	_, ok = c.allocate(2, 0)
	require.True(t, ok)
	assert.Zero(t, c.evictions)
	b, ok := c.allocate(1, 0)
	require.True(t, ok)
	assert.Equal(t, uint64(1), c.evictions)
	assert.Equal(t, a[1], b[0])
	assert.Len(t, c.cachedPrefix(hashes(11, 12), 2), 1, "the head block survived")
	_, ok = c.allocate(2, 0)
	assert.False(t, ok, "only one block is left")
	assert.Equal(t, 3, c.usedBlocks())
}

// An evicted block reports its residency the way vLLM's KV-cache metrics do: idle since its last access
// (its allocation, or the latest prefix-cache hit on it), not since it was freed; alive since its allocation;
// and the gaps between its recorded hits.
func TestKVCacheEvictionReportsResidency(t *testing.T) {
	c := newKVCache(2, 16)
	var got []blockResidency
	c.onEvict = func(ev blockResidency) { got = append(got, ev) }

	a, ok := c.allocate(2, 1) // never used before: nothing to report
	require.True(t, ok)
	require.Empty(t, got)
	c.register(a[0], 11)
	c.register(a[1], 12)
	c.release(a) // at 3 s: freeing is not an access

	// Two later requests find the first block cached (prefix-cache hits at 5 s and 7 s), the second one
	// while the first still holds it.
	head := c.cachedPrefix(func(i int) uint64 { return []uint64{11, 99}[i] }, 2)
	require.Equal(t, []int32{a[0]}, head)
	c.acquire(head, 5)
	c.acquire(head, 7)
	c.release(head)
	c.release(head)

	// A new request takes both blocks at 10 s: the tail block first (least recently freed), then the head.
	b, ok := c.allocate(2, 10)
	require.True(t, ok)
	assert.Equal(t, []int32{a[1], a[0]}, b)
	assert.Equal(t, uint64(2), c.evictions)
	require.Len(t, got, 2, "one observation per evicted block")
	assert.Equal(t, blockResidency{lifetime: 9, idle: 9}, got[0], "never hit: idle since its allocation at 1 s")
	assert.Equal(t, 9.0, got[1].lifetime)
	assert.Equal(t, 3.0, got[1].idle, "idle since the last hit at 7 s")
	assert.Equal(t, []float64{2}, got[1].gaps[:got[1].nGaps], "hits at 5 s and 7 s")

	// The blocks are tracked anew from their new allocation; a block without cached content is reported
	// too when it is taken again, as vLLM does.
	c.release(b)
	_, ok = c.allocate(1, 12.5)
	require.True(t, ok)
	require.Len(t, got, 3)
	assert.Equal(t, blockResidency{lifetime: 2.5, idle: 2.5}, got[2])
	assert.Equal(t, uint64(2), c.evictions, "it held no cached content")
}

// The access history keeps vLLM's last four hits, so an eviction reports at most three reuse gaps.
func TestKVCacheReuseGapsAreTheLastThree(t *testing.T) {
	c := newKVCache(1, 16)
	var got []blockResidency
	c.onEvict = func(ev blockResidency) { got = append(got, ev) }
	a, _ := c.allocate(1, 0)
	for _, at := range []float64{1, 2, 4, 8, 16} {
		c.acquire(a, at)
	}
	c.release(a)
	for range 5 {
		c.release(a)
	}
	_, ok := c.allocate(1, 20)
	require.True(t, ok)
	require.Len(t, got, 1)
	assert.Equal(t, []float64{2, 4, 8}, got[0].gaps[:got[0].nGaps])
	assert.Equal(t, 4.0, got[0].idle)
	assert.Equal(t, 20.0, got[0].lifetime)
}

func TestSameSeedSameGroundTruth(t *testing.T) {
	a := runScenario(t, "kv_pressure").GroundTruth()
	b := runScenario(t, "kv_pressure").GroundTruth()
	require.NotEmpty(t, a)
	assert.True(t, reflect.DeepEqual(a, b), "two runs with one seed differ")

	// Advancing in small uneven steps, as the real-time loop does, changes nothing.
	f, err := New(testConfig(t, "kv_pressure"))
	require.NoError(t, err)
	for v := 0.0; !f.Done(); v += 0.0137 {
		f.Advance(v)
	}
	assert.True(t, reflect.DeepEqual(a, f.GroundTruth()), "stepping the clock in small increments changed the run")

	cfg := testConfig(t, "kv_pressure")
	cfg.Seed = 2
	f, err = New(cfg)
	require.NoError(t, err)
	f.RunToEnd()
	assert.False(t, reflect.DeepEqual(a, f.GroundTruth()), "another seed gave the same run")
}

// sample advances the fleet in steps of dt and calls fn after each.
func sample(f *Fleet, dt float64, fn func(t float64, st []ReplicaState)) {
	for t := dt; !f.Done(); t += dt {
		f.Advance(t)
		fn(t, f.State())
	}
}

func totalWaiting(st []ReplicaState) int {
	n := 0
	for _, s := range st {
		n += s.Waiting
	}
	return n
}

func TestQueueGrowsUnderSpike(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		grows    bool
	}{{"baseline", false}, {"traffic_spike", true}} {
		t.Run(tc.scenario, func(t *testing.T) {
			f, err := New(testConfig(t, tc.scenario))
			require.NoError(t, err)
			start, end := f.sc.Start*f.dur, f.sc.End*f.dur
			var before, during int
			sample(f, 0.5, func(t float64, st []ReplicaState) {
				switch {
				case t < start:
					before = max(before, totalWaiting(st))
				case t < end:
					during = max(during, totalWaiting(st))
				}
			})
			if tc.grows {
				assert.Greater(t, during, 50, "the spike should build a queue")
				assert.Greater(t, during, 10*max(before, 1))
			} else {
				assert.Less(t, during, 20, "baseline traffic should not queue")
			}
		})
	}
}

func TestPreemptionsOnlyUnderKVPressure(t *testing.T) {
	preemptions := func(f *Fleet) (n float64) {
		for _, s := range f.State() {
			n += s.Preemptions
		}
		return n
	}
	assert.Zero(t, preemptions(runScenario(t, "baseline")))
	f := runScenario(t, "kv_pressure")
	assert.Greater(t, preemptions(f), 10.0)
	preempted := 0
	for _, tr := range f.GroundTruth() {
		if tr.Preemptions > 0 {
			preempted++
			assert.Greater(t, tr.ExcessS[CauseKVCachePressure.String()], 0.0, "request %s was preempted but lost no time to it", tr.RequestID)
		}
	}
	assert.Greater(t, preempted, 5)
}

func TestPrefixHitRatioDropsAfterFamilyChange(t *testing.T) {
	f, err := New(testConfig(t, "prompt_family_change"))
	require.NoError(t, err)
	ratio := func(a, b []ReplicaState) float64 {
		var q, h float64
		for i := range a {
			q += b[i].PrefixQueries - a[i].PrefixQueries
			h += b[i].PrefixHits - a[i].PrefixHits
		}
		return h / q
	}
	change := f.sc.Start * f.dur
	f.Advance(5) // past the cold start
	s0 := f.State()
	f.Advance(change)
	s1 := f.State()
	f.Advance(change + 5)
	s2 := f.State()
	f.Advance(f.dur)
	s3 := f.State()
	before, after := ratio(s0, s1), ratio(s2, s3)
	assert.Greater(t, before, 0.6, "acme's agent prompts are mostly cached before the change")
	assert.Less(t, after, before-0.15, "hit ratio before %.2f, after %.2f", before, after)

	// Per request: acme's prompts find their 20k-token prefix before the change (apart from the first on
	// each replica, which computes it) and not after.
	seen := map[string]bool{}
	var hitBefore, before2 int
	for _, tr := range f.GroundTruth() {
		if tr.Family != "acme-agent" {
			continue
		}
		if tr.FaultActive {
			assert.Less(t, tr.CachedTokens, 1000, "request %s after the change", tr.RequestID)
			continue
		}
		if seen[tr.Replica] {
			before2++
			if tr.CachedTokens > 19000 {
				hitBefore++
			}
		}
		seen[tr.Replica] = true
	}
	assert.Greater(t, before2, 5)
	assert.Greater(t, float64(hitBefore), 0.8*float64(before2), "%d of %d found their prefix", hitBefore, before2)
}

func TestThrottlingRaisesStepTime(t *testing.T) {
	f, err := New(testConfig(t, "gpu_throttling"))
	require.NoError(t, err)
	start, end := f.sc.Start*f.dur, f.sc.End*f.dur
	mean := func(a, b ReplicaState) float64 { return (b.StepSeconds - a.StepSeconds) / (b.Steps - a.Steps) }
	f.Advance(5)
	s0 := f.State()
	f.Advance(start)
	s1 := f.State()
	f.Advance(start + 2)
	s2 := f.State()
	f.Advance(end - 0.01)
	s3 := f.State()
	assert.Equal(t, 0.3, s3[0].SMClock)
	assert.Equal(t, 1.0, s3[1].SMClock)
	// dcgm-exporter shows it: replica 0's SM clock at 30% of 1980 MHz with thermal slowdown as the reason,
	// replica 1 at full clock with none.
	dcgm := func(i int, field string) float64 {
		return fixtures.Sum(f.RenderDCGM(i), field)
	}
	assert.Equal(t, 594.0, dcgm(0, "DCGM_FI_DEV_SM_CLOCK"))
	assert.Equal(t, float64(throttleSwThermal|throttleHwThermal), dcgm(0, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"))
	assert.Equal(t, 1980.0, dcgm(1, "DCGM_FI_DEV_SM_CLOCK"))
	assert.Zero(t, dcgm(1, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"))
	assert.Greater(t, dcgm(0, "DCGM_FI_DEV_GPU_TEMP"), dcgm(1, "DCGM_FI_DEV_GPU_TEMP")+10, "the throttled GPU runs hot")
	before, during := mean(s0[0], s1[0]), mean(s2[0], s3[0])
	assert.Greater(t, during, 2*before, "replica 0 step time before %.4fs, throttled %.4fs", before, during)
	other := mean(s2[1], s3[1]) / mean(s0[1], s1[1])
	assert.Less(t, other, 1.5, "replica 1 is not throttled")

	for _, tr := range f.GroundTruth() {
		if tr.Cause == CauseGPUThrottling.String() {
			assert.Equal(t, "vllm-0", tr.Replica, "only replica 0's requests can be slowed by its clocks")
		}
	}
}

// TestPhasesAddUp checks vLLM's intervals on every request: queue, prefill and decode are consecutive
// parts of e2e, and TTFT is queue plus prefill plus the frontend's handling before the queue.
func TestPhasesAddUp(t *testing.T) {
	for _, sc := range ScenarioNames() {
		f := runScenario(t, sc)
		for _, tr := range f.GroundTruth() {
			sum := tr.QueueS + tr.PrefillS + tr.DecodeS
			if !assert.LessOrEqual(t, sum, tr.E2ES+1e-5, "%s %s", sc, tr.RequestID) {
				return
			}
			overhead := tr.TTFTS - tr.QueueS - tr.PrefillS
			if !assert.True(t, overhead > 0 && overhead < 0.02, "%s %s: ttft %.6f, queue %.6f, prefill %.6f", sc, tr.RequestID, tr.TTFTS, tr.QueueS, tr.PrefillS) {
				return
			}
			assert.InDelta(t, tr.E2ES, tr.TTFTS+tr.DecodeS, 2e-6)
		}
	}
}

// TestScenarioSignatures checks that each fault shows up as its own cause in the ground truth, measured
// from the requests it slowed down, and that the baseline is healthy.
func TestScenarioSignatures(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		filter   func(Truth) bool // which slow requests the fault is expected to explain
	}{
		{"traffic_spike", nil},
		{"noisy_tenant", func(tr Truth) bool { return tr.Tenant != "umbrella" }},
		{"prompt_family_change", func(tr Truth) bool { return tr.Family == "acme-agent" }},
		{"kv_pressure", nil},
		{"gpu_throttling", func(tr Truth) bool { return tr.Replica == "vllm-0" }},
		{"tp_imbalance", func(tr Truth) bool { return tr.Replica == "vllm-0" }},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			f := runScenario(t, tc.scenario)
			counts := map[string]int{}
			for _, tr := range f.GroundTruth() {
				if tr.Slow && tr.FaultActive && (tc.filter == nil || tc.filter(tr)) {
					counts[tr.Cause]++
				}
			}
			want := f.sc.Cause.String()
			for cause, n := range counts {
				if cause != want {
					assert.Greater(t, counts[want], n, "%s should be the most common cause, got %v", want, counts)
				}
			}
			assert.Greater(t, counts[want], 10, "%v", counts)
		})
	}
	t.Run("baseline", func(t *testing.T) {
		truth := runScenario(t, "baseline").GroundTruth()
		slow := 0
		for _, tr := range truth {
			if tr.Slow {
				slow++
				assert.NotEqual(t, CauseNone.String(), tr.Cause)
			} else {
				assert.Equal(t, CauseNone.String(), tr.Cause)
			}
		}
		assert.Greater(t, len(truth), 500)
		assert.Less(t, float64(slow)/float64(len(truth)), 0.05, "baseline should be healthy")
	})
}

// TestCausesComeFromMechanics checks that labels follow what happened to the request, not the scenario.
func TestCausesComeFromMechanics(t *testing.T) {
	f := runScenario(t, "kv_pressure")
	for _, tr := range f.GroundTruth() {
		switch tr.Cause {
		case CauseKVCachePressure.String():
			assert.True(t, tr.Preemptions > 0 || tr.QueueS > 0.1, "%s: kv_cache_pressure without preemption or wait", tr.RequestID)
		case CausePrefixCacheMiss.String():
			assert.Less(t, tr.CachedTokens, tr.PromptTokens/2, tr.RequestID)
		case CauseCollectiveWait.String(), CauseGPUThrottling.String():
			t.Errorf("%s: %s without a faulty GPU", tr.RequestID, tr.Cause)
		}
	}
	f = runScenario(t, "tp_imbalance")
	start, end := f.sc.Start*f.dur, f.sc.End*f.dur
	for _, tr := range f.GroundTruth() {
		overlaps := tr.ArrivalS+tr.E2ES > start && tr.ArrivalS < end
		if tr.Replica != "vllm-0" || !overlaps {
			assert.NotEqual(t, CauseCollectiveWait.String(), tr.Cause, "%s on %s", tr.RequestID, tr.Replica)
			assert.Zero(t, tr.ExcessS[CauseCollectiveWait.String()], "%s on %s", tr.RequestID, tr.Replica)
		}
	}
}
