package llmrootcauseconnector

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/servescope/servescope/internal/fleetstate"
	"github.com/servescope/servescope/internal/schema"
)

// Slow reasons.
const (
	slowTTFT = "ttft"
	slowTPOT = "tpot"
	slowE2E  = "e2e"
)

// circumstances are everything a verdict is judged on besides the request itself.
type circumstances struct {
	state    fleetstate.Summary
	baseline *modelBaseline // nil when the model has none yet
	limits   Limits
	// contention returns the other tenant that held the most admitted work while the request queued, its
	// share and how many other requests ran; asked only when the request queued long enough to matter.
	contention func() (topOther string, share float64, others int)
	// the usual cached share of the request's tenant or prompt family (NaN when not known)
	usualCachedShare float64
	// familyPace is the prompt family's median prefill seconds per prompt token (0 when not known)
	familyPace float64
}

type verdict struct {
	slow   bool
	reason string  // the limit exceeded most
	limit  float64 // s; NaN when not slow
	// brokenLimits is how many of its SLOs (TTFT, TPOT, e2e) the request exceeded: past more than one, every
	// phase is in scope, so a slow first token does not hide a slower decode. Limits from the baseline are not
	// counted (README.md, "Root causes", says why).
	brokenLimits int
	cause        string
	secondary    string
	sentence     string
	numbers      []evidenceNumber
	text         []evidenceText
	flags        []evidenceFlag
}

type evidenceNumber struct {
	key   string
	value float64
}

type evidenceText struct{ key, value string }

type evidenceFlag struct {
	key   string
	value bool
}

type candidate struct {
	cause   string
	blame   float64 // seconds of the slow scope this cause explains
	because string
}

// usualFigures are the model's baseline figures a verdict is judged against (NaN where the model has no
// baseline yet, or too few samples).
type usualFigures struct {
	tpot, tpotPace          float64 // s per output token: median, and uncontended (fast decile)
	promptLong, genLong     float64 // tokens at rules.long_quantile
	promptMedian, genMedian float64 // tokens
	prefillPerUncachedToken float64 // s
}

func modelUsual(base *modelBaseline, cfg *Config) usualFigures {
	u := usualFigures{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}
	if base == nil {
		return u
	}
	q := func(rq *decayedQuantiles, quantile float64) float64 {
		return rq.quantile(quantile, cfg.Baseline.MinSamples)
	}
	u.tpot = q(base.tpot, 0.5)
	u.tpotPace = q(base.tpot, 0.1)
	u.genMedian = q(base.genTokens, 0.5)
	u.promptMedian = q(base.promptTokens, 0.5)
	u.promptLong = q(base.promptTokens, cfg.Rules.LongQuantile)
	u.genLong = q(base.genTokens, cfg.Rules.LongQuantile)
	u.prefillPerUncachedToken = q(base.prefillPerUncachedToken, 0.5)
	return u
}

// judgeScratch is what judge works in, kept by its caller and reused request after request: every request
// needs a verdict, its evidence numbers and, when slow, a judgement and its candidates, and the verdict
// returned (its numbers included) is only read until the next request is judged.
type judgeScratch struct {
	v          verdict
	numbers    []evidenceNumber
	j          judgement
	candidates []candidate
	missing    []byte // what the rules lacked, "; " between them
	text       []byte // the sentence being written
}

// judge decides whether r is slow and why. Rules never fire without their evidence: a missing metric means
// the rule cannot hold, and a slow request no rule explains is `unknown`. The verdict's slices live in
// scratch until the next call.
func judge(r *request, c *circumstances, cfg *Config, scratch *judgeScratch) verdict {
	scratch.v = verdict{cause: schema.RootCauseNone, limit: math.NaN()}
	v := &scratch.v
	v.slow, v.reason, v.limit, v.brokenLimits = isSlow(r, c, cfg)
	usual := modelUsual(c.baseline, cfg)
	st := c.state
	v.numbers = append(scratch.numbers[:0],
		evidenceNumber{keyWaitingAtArrival, st.WaitingAtArrival},
		evidenceNumber{keyWaitingMax, st.WaitingMax},
		evidenceNumber{keyQueueGrowth, st.QueueGrowthPerMinute},
		evidenceNumber{keyKVMax, st.KVUtilizationMax},
		evidenceNumber{keyPreemptions, st.Preemptions},
		evidenceNumber{keyHitRatio, st.PrefixHitRatio},
		evidenceNumber{keyHitRatioUsual, st.PrefixHitRatioUsual},
		evidenceNumber{keyTenantHitUsual, c.usualCachedShare},
		evidenceNumber{keyRunningMax, st.RunningMax},
		evidenceNumber{keyRunningUsual, st.RunningUsual},
		evidenceNumber{keyTPOTUsual, usual.tpot},
		evidenceNumber{keyTPOTPace, usual.tpotPace},
		evidenceNumber{keyPromptP90, usual.promptLong},
		evidenceNumber{keyGenP90, usual.genLong},
		evidenceNumber{keyGPUUtil, st.GPUUtilizationMean},
		evidenceNumber{keyXID, st.XIDErrors},
		evidenceNumber{keySLO, v.limit},
		evidenceNumber{keyClockRatio, st.SMClockRatio},
		evidenceNumber{keyCollectiveShare, st.CollectiveWaitShare},
		evidenceNumber{keyCollectiveSkew, st.CollectiveSkewMean},
		evidenceNumber{keyStateAge, st.StateAge},
	)
	scratch.numbers = v.numbers[:0] // the next request appends over these: keep what the buffer grew to
	if len(st.ThrottleReasons) > 0 {
		v.text = append(v.text, evidenceText{keyThrottle, strings.Join(st.ThrottleReasons, ",")})
	}
	if st.CollectiveLateRank != "" {
		v.text = append(v.text, evidenceText{keyCollectiveLate, st.CollectiveLateRank})
	}
	if !math.IsNaN(st.CollectiveObservable) {
		v.flags = append(v.flags, evidenceFlag{keyCollectiveSeen, st.CollectiveObservable > 0})
	}
	text := appendBreakdown(scratch.text[:0], r)
	defer func() { scratch.text = text[:0] }() // the next request writes over it: keep what it grew to
	if !v.slow {
		text = append(text, "; not slow"...)
		v.sentence = string(text)
		return *v
	}

	j := &scratch.j
	j.reset(r, c, cfg, v, usual)
	cands, missing := scratch.candidates[:0], scratch.missing[:0]
	for _, rule := range rootCauseRules {
		if cand, holds := rule.holds(j); holds {
			cands = append(cands, cand)
		}
		if rule.lacks != nil {
			// Each rule's lack is written after the previous one's, "; " between them.
			before := len(missing)
			if before > 0 {
				missing = append(missing, "; "...)
			}
			if lacked := rule.lacks(j, missing); len(lacked) > len(missing) {
				missing = lacked
			} else {
				missing = missing[:before]
			}
		}
	}

	scratch.candidates, scratch.missing = cands[:0], missing[:0]
	cands = mergeSameCause(cands)
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].blame > cands[j].blame })
	text = append(text, "; slow "...)
	text = append(text, v.reason...)
	text = append(text, " ("...)
	text = appendSlowFigure(text, r, v.reason)
	text = append(text, " over "...)
	text = appendFixed(text, v.limit, 2)
	switch {
	case len(cands) == 0 || cands[0].blame <= 0:
		v.cause = schema.RootCauseUnknown
		text = append(text, " s); root cause "+schema.RootCauseUnknown+": no rule has evidence"...)
		if len(missing) > 0 {
			text = append(append(append(text, " ("...), missing...), ')')
		}
	default:
		v.cause = cands[0].cause
		text = append(text, " s); root cause "...)
		text = append(text, v.cause...)
		text = append(text, ": "...)
		text = append(text, cands[0].because...)
		if len(cands) > 1 && cands[1].blame > 0 {
			v.secondary = cands[1].cause
			text = append(text, "; also "...)
			text = append(text, v.secondary...)
			text = append(text, ": "...)
			text = append(text, cands[1].because...)
		}
	}
	// Scrapes that stopped (an engine outage) leave the evidence describing an earlier moment: say so.
	if st.StateAge > staleStateAge(cfg) {
		text = append(text, " (replica state from "...)
		text = append(appendFixed(text, st.StateAge, 0), " s before the request ended)"...)
	}
	v.sentence = string(text)
	return *v
}

// judgement is one slow request as its rules see it: the request, its circumstances and the rule
// thresholds, with the figures several rules share worked out once.
type judgement struct {
	r     *request
	c     *circumstances
	st    fleetstate.Summary
	rules *RulesConfig
	usual usualFigures
	v     *verdict // where a rule adds the evidence it gathered (the tenant holding the batch)

	// The scope of the slowness: slow to first token is queue and prefill; slow per token is decode; e2e all three.
	inScope phaseSet
	scope   float64 // s
	// usualPrefill is the prefill the model usually needs for this request's uncached prompt.
	usualPrefill float64
	// engineExcess is the prefill and decode in scope beyond their usual time for this request's size.
	engineExcess float64
	// kvExhausted: the KV cache ran out, not merely ran full. A full cache that still admits (prefix blocks
	// kept for reuse fill it on a healthy replica) stalls nothing; what shows it ran out is the scheduler
	// preempting running requests for blocks during the request. An engine that does not report preemptions
	// is given the benefit of the utilization alone.
	kvExhausted bool
	clockDrop   bool // a busy GPU's SM clock fell well below its peak
	throttled   bool // throttle reasons, XID errors or a clock drop on the replica's GPUs
	// waitingOnPeers: the nccl receiver's arrival skew on this replica says its collectives waited for a late
	// rank; never where the receiver says the replica's collective time cannot be seen (vLLM's custom
	// all-reduce). waitShare is that share of the time, 0 when not waiting on peers.
	waitingOnPeers bool
	waitShare      float64

	// Who held the batch while the request queued: asked of the circumstances once, and only by the queue
	// rules, when the request queued long enough to matter.
	contentionAsked   bool
	topOther          string
	topOtherShare     float64
	otherRequests     int
	prefixMissChecked bool
	prefixMiss        string // why the prefill is a prefix-cache miss, "" when it is not one
}

// phaseSet is which of a request's phases a judgement looks at.
type phaseSet struct{ queue, prefill, decode bool }

// reset makes j the judgement of r, forgetting the previous request's.
func (j *judgement) reset(r *request, c *circumstances, cfg *Config, v *verdict, usual usualFigures) {
	*j = judgement{r: r, c: c, st: c.state, rules: &cfg.Rules, usual: usual, v: v}
	switch {
	case v.brokenLimits > 1:
		// Past the widest limit too: every phase is in scope (as for e2e), and the candidates' blame decides.
		j.scope = r.e2e
		j.inScope = phaseSet{queue: true, prefill: true, decode: true}
	case v.reason == slowTTFT:
		j.scope = sumKnown(r.queue, r.prefill)
		j.inScope = phaseSet{queue: true, prefill: true}
	case v.reason == slowTPOT:
		j.scope = sumKnown(r.decode)
		j.inScope = phaseSet{decode: true}
	default:
		j.scope = r.e2e
		j.inScope = phaseSet{queue: true, prefill: true, decode: true}
	}
	j.usualPrefill = usual.prefillPerUncachedToken * r.uncachedPrompt()
	usualDecode := usual.tpot * math.Max(0, r.genTokens-1)
	if j.inScope.prefill {
		j.engineExcess += excessOver(r.prefill, j.usualPrefill)
	}
	if j.inScope.decode {
		j.engineExcess += excessOver(r.decode, usualDecode)
	}
	st, rules := &j.st, j.rules
	j.kvExhausted = st.KVUtilizationMax >= rules.KVUtilization && (st.Preemptions > 0 || math.IsNaN(st.Preemptions))
	j.clockDrop = st.SMClockRatio < rules.ClockDrop
	j.throttled = len(st.ThrottleReasons) > 0 || st.XIDErrors > 0 || j.clockDrop
	j.waitingOnPeers = st.CollectiveWaitShare >= rules.CollectiveWaitShare && st.CollectiveObservable != 0
	if j.waitingOnPeers {
		j.waitShare = st.CollectiveWaitShare
	}
}

// share is a phase's share of the slow scope (0 when unknown).
func (j *judgement) share(phase float64) float64 {
	if math.IsNaN(phase) || j.scope <= 0 {
		return 0
	}
	return phase / j.scope
}

// excessOver is what a phase took beyond its usual time: all of it when the usual time is unknown, nothing
// when the phase is.
func excessOver(actual, usual float64) float64 {
	if math.IsNaN(actual) {
		return 0
	}
	if math.IsNaN(usual) {
		return actual
	}
	return math.Max(0, actual-usual)
}

// engineTime is the prefill and decode in scope (s).
func (j *judgement) engineTime() float64 {
	t := 0.0
	if j.inScope.prefill {
		t += sumKnown(j.r.prefill)
	}
	if j.inScope.decode {
		t += sumKnown(j.r.decode)
	}
	return t
}

// queuedLong: the queue is in scope and long enough, in seconds and as a share of the scope, to blame.
func (j *judgement) queuedLong() bool {
	return j.inScope.queue && j.r.queue >= j.rules.MinQueue.Seconds() && j.share(j.r.queue) >= j.rules.QueueShare
}

// queueIsTheBatchs: requests waited during the request and the KV cache did not run out, so the queue is the
// running batch's (one tenant's, or everyone's).
func (j *judgement) queueIsTheBatchs() bool {
	return j.queuedLong() && j.st.WaitingMax >= 1 && !j.kvExhausted
}

// tenantHeldTheBatch asks who held the batch while the request queued, once, and reports whether one other
// tenant held enough of it; the tenant and its share become evidence whenever one is known.
func (j *judgement) tenantHeldTheBatch() bool {
	if !j.contentionAsked {
		j.contentionAsked = true
		if j.c.contention != nil {
			j.topOther, j.topOtherShare, j.otherRequests = j.c.contention()
		}
		if j.topOther != "" {
			j.v.numbers = append(j.v.numbers, evidenceNumber{keyTopOtherShare, j.topOtherShare})
			j.v.text = append(j.v.text, evidenceText{keyTopOther, j.topOther})
		}
	}
	return j.topOther != "" && j.topOtherShare >= j.rules.TenantShare && j.otherRequests >= j.rules.MinTenantRequests
}

// prefillDominates: the prefill is in scope and a large enough share of it to blame.
func (j *judgement) prefillDominates() bool {
	return j.inScope.prefill && j.share(j.r.prefill) >= j.rules.PrefillShare
}

// missedPrefix says why the prefill is a prefix-cache miss ("" when it is not): the request's cached share
// against its tenant's or family's usual one, the replica's hit ratio against its usual level, or, with no
// cached-token count on the span (vLLM), the prompt family's own pace (its prefix usually found cached).
func (j *judgement) missedPrefix() string {
	if j.prefixMissChecked {
		return j.prefixMiss
	}
	j.prefixMissChecked = true
	r, c, st, rules := j.r, j.c, &j.st, j.rules
	requestShare := math.NaN()
	if !math.IsNaN(r.cachedTokens) && r.promptTokens > 0 {
		requestShare = r.cachedTokens / r.promptTokens
	}
	switch {
	case requestShare < rules.CacheMissShare && c.usualCachedShare >= rules.CacheUsualShare:
		j.prefixMiss = fmt.Sprintf("%s of %s prompt tokens cached; this tenant usually gets %.0f%%", num(r.cachedTokens), num(r.promptTokens), 100*c.usualCachedShare)
	case st.PrefixHitRatioUsual >= rules.CacheUsualShare && st.PrefixHitRatio < rules.HitRatioCollapse*st.PrefixHitRatioUsual:
		j.prefixMiss = fmt.Sprintf("replica prefix-cache hit ratio %.0f%% around the request, usually %.0f%%", 100*st.PrefixHitRatio, 100*st.PrefixHitRatioUsual)
	case math.IsNaN(r.cachedTokens) && r.promptTokens > 0 && c.familyPace > 0 && r.prefill/r.promptTokens >= rules.FamilyPaceFactor*c.familyPace:
		j.prefixMiss = fmt.Sprintf("prefill took %.3f ms per prompt token; prompt family %s usually takes %.3f ms (its prefix is usually cached)",
			1000*r.prefill/r.promptTokens, r.family, 1000*c.familyPace)
	}
	return j.prefixMiss
}

// decodeJudgeable: the decode is in scope, measured, and the model has an uncontended pace to compare with.
func (j *judgement) decodeJudgeable() bool {
	return j.inScope.decode && !math.IsNaN(j.r.decode) && !math.IsNaN(j.usual.tpotPace)
}

// rootCauseRule is one rule of the taxonomy README.md documents: when it holds, the candidate names its cause,
// the seconds of the slow scope it explains and why; lacks appends what evidence the rule had none of (nothing
// when it had what it needs), for the sentence of an `unknown` verdict.
type rootCauseRule struct {
	cause string
	holds func(j *judgement) (candidate, bool)
	lacks func(j *judgement, b []byte) []byte
}

// rootCauseRules, in the order they are evaluated: among causes blaming as many seconds, the earlier wins. The
// three queue rules exclude each other, as do prefix_cache_miss and long_prompt.
var rootCauseRules = []rootCauseRule{
	{
		cause: schema.RootCauseQueueSaturation,
		holds: func(j *judgement) (candidate, bool) {
			if !j.queueIsTheBatchs() || j.tenantHeldTheBatch() {
				return candidate{}, false
			}
			st := &j.st
			growth := ""
			if !math.IsNaN(st.WaitingEarlier) && st.WaitingAtArrival > st.WaitingEarlier {
				growth = fmt.Sprintf(", up from %s %.0f s before", num(st.WaitingEarlier), st.WaitingEarlierAge)
			}
			return candidate{
				schema.RootCauseQueueSaturation, j.r.queue,
				fmt.Sprintf("%s waiting at arrival, up to %s during the request%s", num(st.WaitingAtArrival), num(st.WaitingMax), growth),
			}, true
		},
		lacks: func(j *judgement, b []byte) []byte {
			if j.queuedLong() && math.IsNaN(j.st.WaitingMax) {
				b = appendFixed(append(b, "queued "...), j.r.queue, 2)
				return append(append(b, " s but no scheduler state for replica "...), orDash(j.st.Replica)...)
			}
			return b
		},
	},
	{
		cause: schema.RootCauseTenantContention,
		holds: func(j *judgement) (candidate, bool) {
			if !j.queueIsTheBatchs() || !j.tenantHeldTheBatch() {
				return candidate{}, false
			}
			return candidate{
				schema.RootCauseTenantContention, j.r.queue,
				fmt.Sprintf("tenant %s held %.0f%% of the running batch while this request queued %.2f s (%s waiting at arrival)",
					j.topOther, 100*j.topOtherShare, j.r.queue, num(j.st.WaitingAtArrival)),
			}, true
		},
	},
	// Admission stalls on KV blocks, not on batch slots: the queue is the KV cache's.
	{
		cause: schema.RootCauseKVCachePressure,
		holds: func(j *judgement) (candidate, bool) {
			if !j.queuedLong() || !(j.st.WaitingMax >= 1) || !j.kvExhausted {
				return candidate{}, false
			}
			return candidate{
				schema.RootCauseKVCachePressure, j.r.queue,
				fmt.Sprintf("queued %.2f s with the KV cache at %.0f%% (%s waiting at arrival)", j.r.queue, 100*j.st.KVUtilizationMax, num(j.st.WaitingAtArrival)),
			}, true
		},
	},
	// Preemptions for KV blocks slowed prefill and decode.
	{
		cause: schema.RootCauseKVCachePressure,
		holds: func(j *judgement) (candidate, bool) {
			st := &j.st
			if !(st.Preemptions > 0 && st.KVUtilizationMax >= j.rules.KVUtilization && j.engineExcess > 0) {
				return candidate{}, false
			}
			return candidate{
				schema.RootCauseKVCachePressure, j.engineExcess,
				fmt.Sprintf("%s preemptions on the replica during the request with KV cache at %.0f%%", num(st.Preemptions), 100*st.KVUtilizationMax),
			}, true
		},
		lacks: func(j *judgement, b []byte) []byte {
			if math.IsNaN(j.st.Preemptions) && math.IsNaN(j.st.KVUtilizationMax) {
				return append(b, "no KV-cache state"...)
			}
			return b
		},
	},
	{
		cause: schema.RootCausePrefixCacheMiss,
		holds: func(j *judgement) (candidate, bool) {
			if !j.prefillDominates() || j.missedPrefix() == "" {
				return candidate{}, false
			}
			// Blamed: the prefill beyond what it takes at the usual cached share, or at the family's pace.
			r, c := j.r, j.c
			usualAtUsualShare := j.usualPrefill
			switch {
			case !math.IsNaN(c.usualCachedShare):
				usualAtUsualShare = j.usual.prefillPerUncachedToken * r.promptTokens * (1 - c.usualCachedShare)
			case math.IsNaN(r.cachedTokens) && c.familyPace > 0:
				usualAtUsualShare = c.familyPace * r.promptTokens
			}
			return candidate{schema.RootCausePrefixCacheMiss, excessOver(r.prefill, usualAtUsualShare), j.missedPrefix()}, true
		},
	},
	{
		cause: schema.RootCauseLongPrompt,
		holds: func(j *judgement) (candidate, bool) {
			if !j.prefillDominates() || j.missedPrefix() != "" || !(j.r.promptTokens >= j.usual.promptLong) {
				return candidate{}, false
			}
			// Blamed: what the tokens beyond a usual prompt take at the usual pace (like long_generation's),
			// not the whole prefill: a long prompt on a throttled GPU is slow mostly for the throttling.
			blame := j.r.prefill
			if extra := j.usual.prefillPerUncachedToken * (j.r.promptTokens - j.usual.promptMedian); !math.IsNaN(extra) {
				blame = math.Min(blame, math.Max(0, extra))
			}
			return candidate{
				schema.RootCauseLongPrompt, blame,
				fmt.Sprintf("prompt of %s tokens, above this model's p%.0f of %s", num(j.r.promptTokens), 100*j.rules.LongQuantile, num(j.usual.promptLong)),
			}, true
		},
	},
	// Against the model's uncontended pace (its fast-decile TPOT): the median is itself contended on a busy
	// fleet. Contention is what the waiting for a late peer does not explain.
	{
		cause: schema.RootCauseDecodeContention,
		holds: func(j *judgement) (candidate, bool) {
			if !j.decodeJudgeable() {
				return candidate{}, false
			}
			r, st, pace := j.r, &j.st, j.usual.tpotPace
			contention := excessOver(r.decode, pace*math.Max(0, r.genTokens-1)) - j.waitShare*r.decode
			// With the replica preempting, a request that ran in its usual batch was slowed by the preemptions
			// (its own, or recomputation sharing its steps), not by the batch: contention needs a bigger one.
			biggerBatch := !j.kvExhausted || !(st.RunningMax <= st.RunningUsual)
			if !(r.tpot > j.rules.TPOTFactor*pace && st.RunningMax >= 2 && biggerBatch && !j.throttled && contention > 0) {
				return candidate{}, false
			}
			return candidate{
				schema.RootCauseDecodeContention, contention,
				fmt.Sprintf("%.0f ms per token against an uncontended %.0f ms, with up to %s requests running (usually %s)",
					1000*r.tpot, 1000*pace, num(st.RunningMax), num(st.RunningUsual)),
			}, true
		},
	},
	{
		cause: schema.RootCauseLongGeneration,
		holds: func(j *judgement) (candidate, bool) {
			r := j.r
			if !j.decodeJudgeable() || !(j.share(r.decode) >= j.rules.DecodeShare && r.genTokens >= j.usual.genLong) {
				return candidate{}, false
			}
			return candidate{
				schema.RootCauseLongGeneration, j.usual.tpotPace * math.Max(0, r.genTokens-j.usual.genMedian),
				fmt.Sprintf("%s tokens generated, above this model's p%.0f of %s (%.0f ms per token)",
					num(r.genTokens), 100*j.rules.LongQuantile, num(j.usual.genLong), 1000*r.tpot),
			}, true
		},
	},
	// Waiting for a throttled GPU is the throttling's doing: the collectives' waiting is blamed on it as well,
	// so that collective_wait is then its secondary.
	{
		cause: schema.RootCauseGPUThrottling,
		holds: func(j *judgement) (candidate, bool) {
			if !(j.throttled && j.engineExcess > 0) {
				return candidate{}, false
			}
			st := &j.st
			what := []string{}
			if len(st.ThrottleReasons) > 0 {
				what = append(what, "clocks throttled ("+strings.Join(st.ThrottleReasons, ", ")+")")
			}
			if j.clockDrop {
				what = append(what, fmt.Sprintf("SM clock down to %.0f%% of its peak while busy", 100*st.SMClockRatio))
			}
			if st.XIDErrors > 0 {
				what = append(what, fmt.Sprintf("%s XID errors", num(st.XIDErrors)))
			}
			blame := j.engineExcess
			if j.waitingOnPeers {
				blame += j.waitShare * j.engineTime()
			}
			// A replica whose clock fell serves its queue that much slower: of a queue in scope, the share
			// the clock lost is the throttling's doing.
			if j.clockDrop && j.inScope.queue && !math.IsNaN(j.r.queue) {
				blame += (1 - j.st.SMClockRatio) * j.r.queue
			}
			return candidate{schema.RootCauseGPUThrottling, blame, strings.Join(what, " and ") + " on the replica's GPUs during the request"}, true
		},
		lacks: func(j *judgement, b []byte) []byte {
			if !(j.throttled && j.engineExcess > 0) && !j.st.HasGPU {
				return append(b, "no GPU state"...)
			}
			return b
		},
	},
	// The engine's time in scope stretched by the share of time its collectives waited for a late rank.
	{
		cause: schema.RootCauseCollectiveWait,
		holds: func(j *judgement) (candidate, bool) {
			if !j.waitingOnPeers {
				return candidate{}, false
			}
			st := &j.st
			late := ""
			if st.CollectiveLateRank != "" {
				late = fmt.Sprintf(" (%s: %.0f%% of the waiting)", st.CollectiveLateRank, 100*st.CollectiveLateShare)
			}
			return candidate{
				schema.RootCauseCollectiveWait, st.CollectiveWaitShare * j.engineTime(),
				fmt.Sprintf("the replica's collectives spent %.0f%% of the time waiting for a late rank%s, %.2f ms of arrival skew per collective",
					100*st.CollectiveWaitShare, late, 1000*st.CollectiveSkewMean),
			}, true
		},
		lacks: func(j *judgement, b []byte) []byte {
			if !j.waitingOnPeers && j.st.CollectiveObservable == 0 {
				return append(append(append(b, "collective time not observable ("...), orDash(j.st.CollectiveObservableReason)...), ')')
			}
			return b
		},
	},
}

// staleStateAge is the age past which the replica state behind the evidence is said to be old: three times
// the wait for the next scrape, and never less than 30 s.
func staleStateAge(cfg *Config) float64 { return max(3*cfg.MaxWait.Seconds(), 30) }

// mergeSameCause adds up what two rules of one cause blame (KV pressure in the queue and in decode).
func mergeSameCause(cands []candidate) []candidate {
	out := cands[:0]
	at := map[string]int{}
	for _, c := range cands {
		if i, ok := at[c.cause]; ok {
			out[i].blame += c.blame
			out[i].because += "; " + c.because
			continue
		}
		at[c.cause] = len(out)
		out = append(out, c)
	}
	return out
}

// isSlow compares the request's TTFT, TPOT and e2e with their limits and names the one it exceeds most. A
// limit is the SLO where one is set; otherwise what the request should have taken, from the model's healthy
// baseline (exceeded by both baseline.slow_factor and baseline.slow_margin), or baseline.fallback until the
// model has baseline.min_samples healthy requests. Never "the top 5%": a healthy replica has no slow requests.
// broken counts the SLOs exceeded (verdict.brokenLimits).
func isSlow(r *request, c *circumstances, cfg *Config) (slow bool, reason string, limit float64, broken int) {
	expTTFT, expTPOT, expE2E := math.NaN(), math.NaN(), math.NaN()
	if c.baseline != nil {
		expTTFT, expTPOT, expE2E = c.baseline.expected(r, c.state.RunningMax, cfg.Baseline.MinSamples)
	}
	best := 1.0
	limit = math.NaN()
	check := func(name string, value float64, slo time.Duration, expected float64, margin, fallback time.Duration) {
		threshold := slo.Seconds()
		switch {
		case threshold > 0:
		case !math.IsNaN(expected):
			threshold = math.Max(cfg.Baseline.SlowFactor*expected, expected+margin.Seconds())
		default:
			threshold = fallback.Seconds()
		}
		if math.IsNaN(value) || !(threshold > 0) {
			return
		}
		ratio := value / threshold
		if ratio > 1 && slo > 0 {
			broken++
		}
		if ratio > best {
			best, reason, limit = ratio, name, threshold
		}
	}
	b := cfg.Baseline
	check(slowTTFT, r.ttft, c.limits.TTFT, expTTFT, b.SlowMargin.TTFT, b.Fallback.TTFT)
	check(slowTPOT, r.tpot, c.limits.TPOT, expTPOT, b.SlowMargin.TPOT, b.Fallback.TPOT)
	check(slowE2E, r.e2e, c.limits.E2E, expE2E, b.SlowMargin.E2E, b.Fallback.E2E)
	return reason != "", reason, limit, broken
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sumKnown(values ...float64) float64 {
	total := 0.0
	for _, v := range values {
		if !math.IsNaN(v) {
			total += v
		}
	}
	return total
}
