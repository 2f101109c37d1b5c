package llmrootcauseconnector

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// steady is a calm replica: nobody waiting, 16 running, KV at 40%, 70% of prefix-cache queries hit.
func steady(sec float64) map[string]float64 {
	intervals := (sec + 300) / 10
	return map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting: 0, schema.MetricLLMSchedulerRequestsRunning: 16,
		schema.MetricLLMKVCacheUtilization: 0.4, schema.MetricLLMSchedulerPreemptions: 0,
		schema.MetricLLMPrefixCacheQueries: 1000 * intervals, schema.MetricLLMPrefixCacheHits: 700 * intervals,
	}
}

// usual is the traffic the baselines learn from: 60 requests a second apart, 500-token prompts (70% cached
// where the engine reports it), 100 tokens at 20 ms each.
func usual(cached bool) []call {
	var calls []call
	for i := 0; i < 60; i++ {
		c := call{
			replica: "r1", tenant: "acme", family: "support-bot", id: fmt.Sprintf("warm-%d", i), start: float64(i),
			queue: 0.01, prefill: 0.1, decode: 1.98, other: 0.01, prompt: 500, gen: 100, cached: -1,
		}
		if cached {
			c.cached = 350
		}
		calls = append(calls, c)
	}
	return calls
}

type approx struct{ value, relative float64 }

type scenario struct {
	name string
	// state changes the steady replica at a snapshot time (every 10 s from -300 s to 200 s)
	state func(sec float64, v map[string]float64)
	// gpu returns the throttle reasons active at a snapshot time; nil: no GPU data at all
	gpu func(sec float64) []string
	// clock returns the GPU's SM clock (Hz) at a snapshot time, with no throttle reasons reported (as from
	// dcgm-exporter, which gives them only as a bitmask); nil: no clock data
	clock func(sec float64) float64
	// collectives returns the nccl receiver's cumulative view of the replica at a snapshot time; nil: no
	// nccl receiver
	collectives func(sec float64) fleetstatetest.Collectives
	cached      bool // the engine reports cached tokens (SGLang's shape)
	// twoReplicas adds a second replica to the state, so a span naming neither cannot join a lone sidecar one
	twoReplicas bool
	others      []call // requests sent with the one under test
	req         call
	limits      *Limits
	noSLO       bool // no SLO for the model: judged against its healthy baseline

	wantSlow      bool
	wantReason    string
	wantCause     string
	wantSecondary string
	wantEvidence  map[string]any
	wantSentence  []string
}

func (sc scenario) run(t *testing.T) map[string]any {
	r := newRig(t, func(c *Config) {
		c.MaxWait = 0 // the state is all there before the spans; waiting has its own tests
		if sc.limits != nil {
			c.SLO.Models[testModel] = *sc.limits
		}
		if sc.noSLO {
			delete(c.SLO.Models, testModel)
		}
	})
	for sec := -300.0; sec <= 200; sec += 10 {
		v := steady(sec)
		if sc.state != nil {
			sc.state(sec, v)
		}
		r.state(fleetstatetest.Engine("r1", testModel, sec, v))
		if sc.gpu != nil {
			r.state(fleetstatetest.GPU("GPU-1", "", sec, 0.9, sc.gpu(sec), 0))
		}
		if sc.clock != nil {
			r.state(fleetstatetest.GPUWith(sec, fleetstatetest.GPUState{ID: "GPU-1", Utilization: 0.9, SMClockHz: sc.clock(sec)}))
		}
		if sc.collectives != nil {
			r.state(fleetstatetest.CollectivesAt(sec, sc.collectives(sec)))
		}
		if sc.twoReplicas {
			r.state(fleetstatetest.Engine("r2", testModel, sec, steady(sec)))
		}
	}
	r.send(batchOf(usual(sc.cached)...))
	req := sc.req
	req.id = "under-test"
	if req.replica == "" {
		req.replica = "r1"
	}
	if req.tenant == "" {
		req.tenant = "acme"
	}
	r.send(batchOf(append(append([]call{}, sc.others...), req)...))
	got := r.explained()
	_, ok := got["under-test"]
	require.True(t, ok, "the request under test was not sent on")
	for i := 0; i < 60; i++ {
		require.Equal(t, schema.RootCauseNone, got[fmt.Sprintf("warm-%d", i)][schema.AttrLLMRootCause], "usual traffic is not slow")
	}
	return got["under-test"]
}

// normal is a request like the usual ones, arriving at 100.5 s; scenarios change what they need.
func normal() call {
	return call{start: 100.5, queue: 0.01, prefill: 0.1, decode: 1.98, other: 0.01, prompt: 500, gen: 100, cached: -1}
}

func with(c call, change func(*call)) call {
	change(&c)
	return c
}

func queueGrowing(sec float64, v map[string]float64) {
	if sec >= 40 {
		v[schema.MetricLLMSchedulerRequestsWaiting] = 14 + (sec-40)*28/60 // 14 at 40 s, 42 at 100 s
	}
}

// straggler is a tensor-parallel pair whose rank 1 falls behind from 90 s on: before, rank 0 waits 1% of
// its time at all-reduces; after, 70% (7 s of every 10, 3.5 ms per all-reduce): all of the decode's
// slowdown in the scenarios below. observable is what the nccl
// receiver says of the replica.
func straggler(observable bool) func(sec float64) fleetstatetest.Collectives {
	return waitingFor(0.7, observable)
}

// waitingFor is straggler with the share of time rank 0 waits from 90 s on.
func waitingFor(share float64, observable bool) func(sec float64) fleetstatetest.Collectives {
	return func(sec float64) fleetstatetest.Collectives {
		ops := uint64(200 * (sec + 300)) // 2000 all-reduces per 10 s
		skew := 0.01 * (sec + 300)
		if sec > 90 {
			skew = 0.01*390 + share*(sec-90)
		}
		reason := "records"
		if !observable {
			reason = "custom_all_reduce"
		}
		return fleetstatetest.Collectives{
			Replica: "r1", Observable: observable, Reason: reason, LateRank: 1,
			Ranks: []fleetstatetest.CollectiveRank{
				{GPU: "GPU-a", PID: 10, TPRank: 0, Operations: ops, OperationSeconds: 0.0005*float64(ops) + skew},
				{GPU: "GPU-b", PID: 11, TPRank: 1, Operations: ops, OperationSeconds: 0.0005 * float64(ops)},
			},
			Skews: ops, SkewSeconds: skew,
		}
	}
}

func TestRootCauses(t *testing.T) {
	scenarios := []scenario{
		{
			name: "not slow", req: normal(), wantCause: schema.RootCauseNone,
			wantSentence: []string{"queue 0.01 s, prefill 0.10 s, decode 1.98 s, other 0.01 s of 2.10 s; not slow"},
		},
		{
			name: "queue saturation", state: queueGrowing,
			req:      with(normal(), func(c *call) { c.queue = 3.4 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseQueueSaturation,
			wantEvidence: map[string]any{keyWaitingAtArrival: 42.0, keyQueueGrowth: 43.0 / 15, keySLO: 1.0},
			wantSentence: []string{"queue 3.40 s", "42 waiting at arrival", "up from 14 60 s before"},
		},
		{
			name: "tenant contention", state: queueGrowing,
			others: []call{
				{replica: "r1", tenant: "batch-co", id: "b1", start: 99, queue: 0.01, prefill: 0.5, decode: 3.98, other: 0.01, prompt: 6000, gen: 200, cached: -1},
				{replica: "r1", tenant: "batch-co", id: "b2", start: 99.2, queue: 0.01, prefill: 0.5, decode: 3.98, other: 0.01, prompt: 6000, gen: 200, cached: -1},
				{replica: "r1", tenant: "batch-co", id: "b3", start: 99.4, queue: 0.01, prefill: 0.5, decode: 3.98, other: 0.01, prompt: 6000, gen: 200, cached: -1},
				{replica: "r1", tenant: "acme", id: "a1", start: 99.5, queue: 0.01, prefill: 0.1, decode: 1.98, other: 0.01, prompt: 500, gen: 100, cached: -1},
			},
			req:      with(normal(), func(c *call) { c.queue = 3.4 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseTenantContention,
			// It waits from 100.5 to 103.9 s: batch-co's requests spend 3.0, 3.2 and 3.4 s of that in the batch,
			// acme's 1.1 s. Each batch-co request lasted 4.49 s, and of the requests that long overlapping the
			// wait only 5.49/7.89 have ended by the newest end the log holds (105.99 s), so each counts 7.89/5.49.
			wantEvidence: map[string]any{keyTopOther: "batch-co", keyTopOtherShare: 9.6 * 7.89 / 5.49 / (9.6*7.89/5.49 + 1.1), keyWaitingAtArrival: 42.0},
			wantSentence: []string{"tenant batch-co held 93% of the running batch while this request queued 3.40 s"},
		},
		{
			name: "KV-cache pressure",
			state: func(sec float64, v map[string]float64) {
				if sec >= 100 {
					v[schema.MetricLLMKVCacheUtilization] = 0.98
					v[schema.MetricLLMSchedulerPreemptions] = map[float64]float64{100: 0, 110: 5, 120: 12}[sec]
				}
			},
			req:      with(normal(), func(c *call) { c.decode = 7.9 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseKVCachePressure,
			wantEvidence: map[string]any{keyPreemptions: 5.0, keyKVMax: 0.98},
			wantSentence: []string{"5 preemptions", "KV cache at 98%"},
		},
		{
			name: "prefix-cache miss where the tenant usually hits", cached: true,
			req:      with(normal(), func(c *call) { c.prompt, c.cached, c.prefill = 1800, 0, 2.2 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCausePrefixCacheMiss,
			wantEvidence: map[string]any{keyTenantHitUsual: 0.7},
			wantSentence: []string{"0 of 1800 prompt tokens cached; this tenant usually gets 70%"},
		},
		{
			name: "prefix-cache miss when the replica's hit ratio collapses",
			state: func(sec float64, v map[string]float64) {
				if sec > 40 { // from 40 s on, 50 of every 1000 queries hit
					v[schema.MetricLLMPrefixCacheHits] = 700*34 + 50*(sec-40)/10
				}
			},
			req:      with(normal(), func(c *call) { c.prefill = 1.2 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCausePrefixCacheMiss,
			wantEvidence: map[string]any{keyHitRatio: 0.05},
			wantSentence: []string{"replica prefix-cache hit ratio 5% around the request"},
		},
		{
			name:     "long prompt",
			req:      with(normal(), func(c *call) { c.prompt, c.prefill = 8000, 1.6 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseLongPrompt,
			wantSentence: []string{"prompt of 8000 tokens"},
		},
		{
			name:     "long generation",
			req:      with(normal(), func(c *call) { c.gen, c.decode = 3000, 59.98 }),
			wantSlow: true, wantReason: slowE2E, wantCause: schema.RootCauseLongGeneration,
			wantSentence: []string{"3000 tokens generated", "(20 ms per token)"},
		},
		{
			name: "decode contention",
			state: func(sec float64, v map[string]float64) {
				if sec >= 100 {
					v[schema.MetricLLMSchedulerRequestsRunning] = 40
				}
			},
			req:      with(normal(), func(c *call) { c.decode = 7.92 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseDecodeContention,
			wantEvidence: map[string]any{keyRunningMax: 40.0, keyRunningUsual: 16.0, keyTPOTUsual: approx{0.02, 0.05}, keyTPOTPace: approx{0.02, 0.05}},
			wantSentence: []string{"80 ms per token against an uncontended", "with up to 40 requests running (usually 16)"},
		},
		{
			// Both SLOs broken, the first token by more: the decode's 9.9 s past its usual time outweighs the
			// 3 s queue, so the decode's cause names it (scoped to the first token alone, the queue did).
			name: "past two SLOs: every phase is in scope and the larger excess wins",
			state: func(sec float64, v map[string]float64) {
				queueGrowing(sec, v)
				if sec >= 100 {
					v[schema.MetricLLMSchedulerRequestsRunning] = 40
				}
			},
			limits:   &Limits{TTFT: time.Second, TPOT: 50 * time.Millisecond, E2E: time.Minute},
			req:      with(normal(), func(c *call) { c.queue, c.decode = 3, 11.88 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseDecodeContention,
			wantSentence: []string{"slow ttft (ttft 3.10 s over 1.00 s); root cause decode_contention: 120 ms per token against an uncontended"},
		},
		{
			// Without SLOs the widest limit alone sets the scope: a queueing replica's full batch usually runs
			// past twice the healthy pace, and the wait is what the queue rules explain (docs/accuracy.md).
			name: "past two limits without SLOs: the widest one's phases are in scope",
			state: func(sec float64, v map[string]float64) {
				queueGrowing(sec, v)
				if sec >= 100 {
					v[schema.MetricLLMSchedulerRequestsRunning] = 40
				}
			},
			noSLO:    true,
			req:      with(normal(), func(c *call) { c.queue, c.decode = 6, 11.88 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseQueueSaturation,
		},
		{
			name: "GPU throttling",
			gpu: func(sec float64) []string {
				if sec >= 100 {
					return []string{"hw_slowdown"}
				}
				return nil
			},
			req:      with(normal(), func(c *call) { c.decode = 5.94 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseGPUThrottling,
			wantEvidence: map[string]any{keyThrottle: "hw_slowdown"},
			wantSentence: []string{"clocks throttled (hw_slowdown)"},
		},
		{
			name: "GPU throttling seen as a clock drop under load",
			clock: func(sec float64) float64 {
				if sec >= 100 {
					return 600e6
				}
				return 1980e6
			},
			req:      with(normal(), func(c *call) { c.decode = 5.94 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseGPUThrottling,
			wantEvidence: map[string]any{keyClockRatio: 600.0 / 1980},
			wantSentence: []string{"SM clock down to 30% of its peak while busy"},
		},
		{
			// At the usual pace the 8000-token prompt takes 1.6 s, 1.5 s more than a usual one; the throttled GPU
			// took 3.2 s beyond that pace. Blaming the whole prefill on the prompt's length named long_prompt.
			name: "a long prompt on a throttled GPU: throttling explains more, long_prompt is secondary",
			gpu: func(sec float64) []string {
				if sec >= 100 {
					return []string{"hw_slowdown"}
				}
				return nil
			},
			req:      with(normal(), func(c *call) { c.prompt, c.prefill = 8000, 4.8 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseGPUThrottling, wantSecondary: schema.RootCauseLongPrompt,
			wantSentence: []string{"clocks throttled (hw_slowdown)", "also long_prompt: prompt of 8000 tokens"},
		},
		{
			// The clock at 30% of its peak: of the 2 s queue, 1.4 s is the throttling's, with the prefill's
			// 0.7 s beyond its usual 0.1 s that is more than the queue alone.
			name: "a queue on a replica whose clock fell is the throttling's in the share the clock lost", state: queueGrowing,
			clock: func(sec float64) float64 {
				if sec >= 100 {
					return 594e6
				}
				return 1980e6
			},
			req:      with(normal(), func(c *call) { c.queue, c.prefill = 2, 0.8 }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseGPUThrottling, wantSecondary: schema.RootCauseQueueSaturation,
			wantSentence: []string{"SM clock down to 30% of its peak while busy", "also queue_saturation"},
		},
		{
			name: "queueing and throttling: the larger share wins, the other is secondary", state: queueGrowing,
			gpu: func(sec float64) []string {
				if sec >= 100 {
					return []string{"sw_thermal"}
				}
				return nil
			},
			limits:   &Limits{TTFT: time.Minute, TPOT: time.Second, E2E: 10 * time.Second},
			req:      with(normal(), func(c *call) { c.queue, c.decode = 6, 5.94 }),
			wantSlow: true, wantReason: slowE2E, wantCause: schema.RootCauseQueueSaturation, wantSecondary: schema.RootCauseGPUThrottling,
			wantSentence: []string{"also gpu_throttling: clocks throttled (sw_thermal)"},
		},
		{
			name: "collective wait on a straggler rank", collectives: straggler(true),
			req:      with(normal(), func(c *call) { c.decode = 5.94 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseCollectiveWait,
			wantEvidence: map[string]any{keyCollectiveShare: 0.7, keyCollectiveSkew: 0.0035, keyCollectiveLate: "tp rank 1, communicator tp0", keyCollectiveSeen: true},
			wantSentence: []string{"the replica's collectives spent 70% of the time waiting for a late rank (tp rank 1, communicator tp0: 100% of the waiting), 3.50 ms of arrival skew per collective"},
		},
		{
			name: "a batch surge with a mild straggler: contention keeps what the waiting does not explain", collectives: waitingFor(0.25, true),
			state: func(sec float64, v map[string]float64) {
				if sec >= 100 {
					v[schema.MetricLLMSchedulerRequestsRunning] = 40
				}
			},
			req:      with(normal(), func(c *call) { c.decode = 7.92 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseDecodeContention, wantSecondary: schema.RootCauseCollectiveWait,
			wantEvidence: map[string]any{keyCollectiveShare: 0.25},
			wantSentence: []string{"with up to 40 requests running", "also collective_wait: the replica's collectives spent 25%"},
		},
		{
			name: "the same skew where the receiver says collectives cannot be seen is never collective wait", collectives: straggler(false),
			req:      with(normal(), func(c *call) { c.decode = 5.94 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseDecodeContention,
			wantEvidence: map[string]any{keyCollectiveSeen: false, keyCollectiveShare: 0.7},
			wantSentence: []string{"60 ms per token against an uncontended"},
		},
		{
			name: "blind to collectives and nothing else holds: unknown, with the reason", collectives: straggler(false),
			state:    func(_ float64, v map[string]float64) { v[schema.MetricLLMSchedulerRequestsRunning] = 1 },
			req:      with(normal(), func(c *call) { c.decode = 5.94 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseUnknown,
			wantSentence: []string{"no rule has evidence", "collective time not observable (custom_all_reduce)"},
		},
		{
			name: "a throttled straggler: throttling explains more, collective wait is secondary", collectives: straggler(true),
			gpu: func(sec float64) []string {
				if sec >= 100 {
					return []string{"hw_slowdown"}
				}
				return nil
			},
			req:      with(normal(), func(c *call) { c.decode = 5.94 }),
			wantSlow: true, wantReason: slowTPOT, wantCause: schema.RootCauseGPUThrottling, wantSecondary: schema.RootCauseCollectiveWait,
			wantSentence: []string{"also collective_wait: the replica's collectives spent 70%"},
		},
		{
			name: "slow with no state for its replica is unknown, never a guess", twoReplicas: true,
			req:      with(normal(), func(c *call) { c.replica, c.queue, c.model = "r-without-metrics", 3.4, testModel }),
			wantSlow: true, wantReason: slowTTFT, wantCause: schema.RootCauseUnknown,
			wantSentence: []string{"no rule has evidence", "queued 3.40 s but no scheduler state for replica -"},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			got := sc.run(t)
			assert.Equal(t, sc.wantSlow, got[schema.AttrLLMSlow])
			if sc.wantSlow {
				assert.Equal(t, sc.wantReason, got[schema.AttrLLMSlowReason])
			} else {
				assert.NotContains(t, got, schema.AttrLLMSlowReason)
			}
			assert.Equal(t, sc.wantCause, got[schema.AttrLLMRootCause], got[schema.AttrLLMRootCauseEvidence])
			if sc.wantSecondary != "" {
				assert.Equal(t, sc.wantSecondary, got[schema.AttrLLMRootCauseSecondary])
			} else {
				assert.NotContains(t, got, schema.AttrLLMRootCauseSecondary, got[schema.AttrLLMRootCauseEvidence])
			}
			for k, want := range sc.wantEvidence {
				switch w := want.(type) {
				case float64:
					assert.InDelta(t, w, got[k], 1e-6, k)
				case approx: // a baseline quantile, estimated within the sketch's relative error
					assert.InEpsilon(t, w.value, got[k], w.relative, k)
				default:
					assert.Equal(t, want, got[k], k)
				}
			}
			for _, s := range sc.wantSentence {
				assert.Contains(t, got[schema.AttrLLMRootCauseEvidence], s)
			}
		})
	}
}
