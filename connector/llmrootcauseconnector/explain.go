package llmrootcauseconnector

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/servescope/servescope/internal/fleetstate"
)

// Root causes: the taxonomy README.md documents, one rule each.
const (
	causeQueueSaturation  = "queue_saturation"
	causeTenantContention = "tenant_contention"
	causeKVCachePressure  = "kv_cache_pressure"
	causePrefixCacheMiss  = "prefix_cache_miss"
	causeLongPrompt       = "long_prompt"
	causeLongGeneration   = "long_generation"
	causeDecodeContention = "decode_contention"
	causeGPUThrottling    = "gpu_throttling"
	causeCollectiveWait   = "collective_wait"
	causeUnknown          = "unknown"
	causeNone             = "none"
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
	slow      bool
	reason    string
	limit     float64 // s; NaN when not slow
	cause     string
	secondary string
	sentence  string
	numbers   []evidenceNumber
	text      []evidenceText
	flags     []evidenceFlag
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

// judge decides whether r is slow and why. Rules never fire without their evidence: a missing metric means
// the rule cannot hold, and a slow request no rule explains is `unknown`.
func judge(r *request, c *circumstances, cfg *Config) verdict {
	v := verdict{cause: causeNone, limit: math.NaN()}
	v.slow, v.reason, v.limit = isSlow(r, c, cfg)
	base := c.baseline
	q := func(rq *decayedQuantiles, quantile float64) float64 {
		if base == nil {
			return math.NaN()
		}
		return rq.quantile(quantile, cfg.Baseline.MinSamples)
	}
	tpotUsual, tpotPace := math.NaN(), math.NaN()
	promptP90, genP90, genP50, prefillPerToken := math.NaN(), math.NaN(), math.NaN(), math.NaN()
	if base != nil {
		tpotUsual = q(base.tpot, 0.5)
		tpotPace = q(base.tpot, 0.1)
		genP50 = q(base.genTokens, 0.5)
		promptP90 = q(base.promptTokens, cfg.Rules.LongQuantile)
		genP90 = q(base.genTokens, cfg.Rules.LongQuantile)
		prefillPerToken = q(base.prefillPerUncachedToken, 0.5)
	}
	st := c.state
	v.numbers = []evidenceNumber{
		{keyWaitingAtArrival, st.WaitingAtArrival}, {keyWaitingMax, st.WaitingMax}, {keyQueueGrowth, st.QueueGrowthPerMinute},
		{keyKVMax, st.KVUtilizationMax}, {keyPreemptions, st.Preemptions}, {keyHitRatio, st.PrefixHitRatio},
		{keyHitRatioUsual, st.PrefixHitRatioUsual}, {keyTenantHitUsual, c.usualCachedShare}, {keyRunningMax, st.RunningMax},
		{keyRunningUsual, st.RunningUsual}, {keyTPOTUsual, tpotUsual}, {keyTPOTPace, tpotPace}, {keyPromptP90, promptP90}, {keyGenP90, genP90},
		{keyGPUUtil, st.GPUUtilizationMean}, {keyXID, st.XIDErrors}, {keySLO, v.limit}, {keyClockRatio, st.SMClockRatio},
		{keyCollectiveShare, st.CollectiveWaitShare}, {keyCollectiveSkew, st.CollectiveSkewMean}, {keyStateAge, st.StateAge},
	}
	if len(st.ThrottleReasons) > 0 {
		v.text = append(v.text, evidenceText{keyThrottle, strings.Join(st.ThrottleReasons, ",")})
	}
	if st.CollectiveLateRank != "" {
		v.text = append(v.text, evidenceText{keyCollectiveLate, st.CollectiveLateRank})
	}
	if !math.IsNaN(st.CollectiveObservable) {
		v.flags = append(v.flags, evidenceFlag{keyCollectiveSeen, st.CollectiveObservable > 0})
	}
	if !v.slow {
		v.sentence = breakdown(r) + "; not slow"
		return v
	}

	// The scope of the slowness: slow to first token is queue and prefill; slow per token is decode.
	var scope float64
	inScope := map[string]bool{}
	switch v.reason {
	case slowTTFT:
		scope = sumKnown(r.queue, r.prefill)
		inScope["queue"], inScope["prefill"] = true, true
	case slowTPOT:
		scope = sumKnown(r.decode)
		inScope["decode"] = true
	default:
		scope = r.e2e
		inScope["queue"], inScope["prefill"], inScope["decode"] = true, true, true
	}
	share := func(phase float64) float64 {
		if math.IsNaN(phase) || scope <= 0 {
			return 0
		}
		return phase / scope
	}
	usualPrefill := prefillPerToken * r.uncachedPrompt()
	usualDecode := tpotUsual * math.Max(0, r.genTokens-1)
	excess := func(actual, usual float64) float64 {
		if math.IsNaN(actual) {
			return 0
		}
		if math.IsNaN(usual) {
			return actual
		}
		return math.Max(0, actual-usual)
	}
	engineExcess := 0.0
	if inScope["prefill"] {
		engineExcess += excess(r.prefill, usualPrefill)
	}
	if inScope["decode"] {
		engineExcess += excess(r.decode, usualDecode)
	}
	rules := &cfg.Rules
	var cands []candidate
	var missing []string

	// queue_saturation / tenant_contention
	if inScope["queue"] && r.queue >= rules.MinQueue.Seconds() && share(r.queue) >= rules.QueueShare {
		switch {
		case math.IsNaN(st.WaitingMax):
			missing = append(missing, fmt.Sprintf("queued %.2f s but no scheduler state for replica %s", r.queue, orDash(st.Replica)))
		case st.WaitingMax >= 1 && st.KVUtilizationMax >= rules.KVUtilization:
			// Admission stalls on KV blocks, not on batch slots: the queue is the KV cache's.
			cands = append(cands, candidate{causeKVCachePressure, r.queue,
				fmt.Sprintf("queued %.2f s with the KV cache at %.0f%% (%s waiting at arrival)", r.queue, 100*st.KVUtilizationMax, num(st.WaitingAtArrival))})
		case st.WaitingMax >= 1:
			var top string
			var topShare float64
			var others int
			if c.contention != nil {
				top, topShare, others = c.contention()
			}
			if top != "" {
				v.numbers = append(v.numbers, evidenceNumber{keyTopOtherShare, topShare})
				v.text = append(v.text, evidenceText{keyTopOther, top})
			}
			if top != "" && topShare >= rules.TenantShare && others >= rules.MinTenantRequests {
				cands = append(cands, candidate{causeTenantContention, r.queue,
					fmt.Sprintf("tenant %s held %.0f%% of the work admitted while this request queued %.2f s (%s waiting at arrival)",
						top, 100*topShare, r.queue, num(st.WaitingAtArrival))})
			} else {
				growth := ""
				if !math.IsNaN(st.WaitingEarlier) && st.WaitingAtArrival > st.WaitingEarlier {
					growth = fmt.Sprintf(", up from %s %.0f s before", num(st.WaitingEarlier), st.WaitingEarlierAge)
				}
				cands = append(cands, candidate{causeQueueSaturation, r.queue,
					fmt.Sprintf("%s waiting at arrival, up to %s during the request%s", num(st.WaitingAtArrival), num(st.WaitingMax), growth)})
			}
		}
	}
	// kv_cache_pressure
	if st.Preemptions > 0 && st.KVUtilizationMax >= rules.KVUtilization && engineExcess > 0 {
		cands = append(cands, candidate{causeKVCachePressure, engineExcess,
			fmt.Sprintf("%s preemptions on the replica during the request with KV cache at %.0f%%", num(st.Preemptions), 100*st.KVUtilizationMax)})
	} else if math.IsNaN(st.Preemptions) && math.IsNaN(st.KVUtilizationMax) {
		missing = append(missing, "no KV-cache state")
	}
	// prefix_cache_miss / long_prompt
	if inScope["prefill"] && share(r.prefill) >= rules.PrefillShare {
		requestShare := math.NaN()
		if !math.IsNaN(r.cachedTokens) && r.promptTokens > 0 {
			requestShare = r.cachedTokens / r.promptTokens
		}
		var miss string
		switch {
		case requestShare < rules.CacheMissShare && c.usualCachedShare >= rules.CacheUsualShare:
			miss = fmt.Sprintf("%s of %s prompt tokens cached; this tenant usually gets %.0f%%", num(r.cachedTokens), num(r.promptTokens), 100*c.usualCachedShare)
		case st.PrefixHitRatioUsual >= rules.CacheUsualShare && st.PrefixHitRatio < rules.HitRatioCollapse*st.PrefixHitRatioUsual:
			miss = fmt.Sprintf("replica prefix-cache hit ratio %.0f%% around the request, usually %.0f%%", 100*st.PrefixHitRatio, 100*st.PrefixHitRatioUsual)
		case math.IsNaN(r.cachedTokens) && r.promptTokens > 0 && c.familyPace > 0 && r.prefill/r.promptTokens >= rules.FamilyPaceFactor*c.familyPace:
			// No cached-token count on the span (vLLM): the prompt family's own pace says its prefix is
			// usually found cached, and this prefill computed far more of it.
			miss = fmt.Sprintf("prefill took %.3f ms per prompt token; prompt family %s usually takes %.3f ms (its prefix is usually cached)",
				1000*r.prefill/r.promptTokens, r.family, 1000*c.familyPace)
		}
		usualAtUsualShare := usualPrefill
		switch {
		case !math.IsNaN(c.usualCachedShare):
			usualAtUsualShare = prefillPerToken * r.promptTokens * (1 - c.usualCachedShare)
		case math.IsNaN(r.cachedTokens) && c.familyPace > 0:
			usualAtUsualShare = c.familyPace * r.promptTokens
		}
		switch {
		case miss != "":
			cands = append(cands, candidate{causePrefixCacheMiss, excess(r.prefill, usualAtUsualShare), miss})
		case r.promptTokens >= promptP90:
			cands = append(cands, candidate{causeLongPrompt, r.prefill,
				fmt.Sprintf("prompt of %s tokens, above this model's p%.0f of %s", num(r.promptTokens), 100*rules.LongQuantile, num(promptP90))})
		}
	}
	// long_generation / decode_contention, against the model's uncontended pace (its fast-decile TPOT): the
	// median is itself contended on a busy fleet.
	preempted := st.Preemptions > 0 && st.KVUtilizationMax >= rules.KVUtilization
	clockDrop := st.SMClockRatio < rules.ClockDrop
	throttled := len(st.ThrottleReasons) > 0 || st.XIDErrors > 0 || clockDrop
	// Collective waiting needs the nccl receiver's arrival skew on this replica, and never counts where the
	// receiver says the replica's collective time cannot be seen (e.g. vLLM's custom all-reduce).
	waitingOnPeers := st.CollectiveWaitShare >= rules.CollectiveWaitShare && st.CollectiveObservable != 0
	waitShare := 0.0
	if waitingOnPeers {
		waitShare = st.CollectiveWaitShare
	}
	if inScope["decode"] && !math.IsNaN(r.decode) && !math.IsNaN(tpotPace) {
		// Contention is what the waiting for a late peer does not explain.
		contention := excess(r.decode, tpotPace*math.Max(0, r.genTokens-1)) - waitShare*r.decode
		if r.tpot > rules.TPOTFactor*tpotPace && st.RunningMax >= 2 && !preempted && !throttled && contention > 0 {
			cands = append(cands, candidate{causeDecodeContention, contention,
				fmt.Sprintf("%.0f ms per token against an uncontended %.0f ms, with up to %s requests running (usually %s)",
					1000*r.tpot, 1000*tpotPace, num(st.RunningMax), num(st.RunningUsual))})
		}
		if share(r.decode) >= rules.DecodeShare && r.genTokens >= genP90 {
			cands = append(cands, candidate{causeLongGeneration, tpotPace * math.Max(0, r.genTokens-genP50),
				fmt.Sprintf("%s tokens generated, above this model's p%.0f of %s (%.0f ms per token)",
					num(r.genTokens), 100*rules.LongQuantile, num(genP90), 1000*r.tpot)})
		}
	}
	// gpu_throttling
	if throttled && engineExcess > 0 {
		what := []string{}
		if len(st.ThrottleReasons) > 0 {
			what = append(what, "clocks throttled ("+strings.Join(st.ThrottleReasons, ", ")+")")
		}
		if clockDrop {
			what = append(what, fmt.Sprintf("SM clock down to %.0f%% of its peak while busy", 100*st.SMClockRatio))
		}
		if st.XIDErrors > 0 {
			what = append(what, fmt.Sprintf("%s XID errors", num(st.XIDErrors)))
		}
		cands = append(cands, candidate{causeGPUThrottling, engineExcess, strings.Join(what, " and ") + " on the replica's GPUs during the request"})
	} else if !st.HasGPU {
		missing = append(missing, "no GPU state")
	}

	// collective_wait: the engine's time in scope stretched by the share of time its collectives waited for a
	// late rank. Waiting for a throttled GPU is the throttling's doing: that blame goes to gpu_throttling as
	// well, so collective_wait is then its secondary.
	switch {
	case waitingOnPeers:
		engineTime := 0.0
		if inScope["prefill"] {
			engineTime += sumKnown(r.prefill)
		}
		if inScope["decode"] {
			engineTime += sumKnown(r.decode)
		}
		for i := range cands {
			if cands[i].cause == causeGPUThrottling {
				cands[i].blame += waitShare * engineTime
			}
		}
		late := ""
		if st.CollectiveLateRank != "" {
			late = fmt.Sprintf(" (%s: %.0f%% of the waiting)", st.CollectiveLateRank, 100*st.CollectiveLateShare)
		}
		cands = append(cands, candidate{causeCollectiveWait, st.CollectiveWaitShare * engineTime,
			fmt.Sprintf("the replica's collectives spent %.0f%% of the time waiting for a late rank%s, %.2f ms of arrival skew per collective",
				100*st.CollectiveWaitShare, late, 1000*st.CollectiveSkewMean)})
	case st.CollectiveObservable == 0:
		missing = append(missing, "collective time not observable ("+orDash(st.CollectiveObservableReason)+")")
	}

	cands = mergeSameCause(cands)
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].blame > cands[j].blame })
	var because []string
	switch {
	case len(cands) == 0 || cands[0].blame <= 0:
		v.cause = causeUnknown
		reason := "no rule has evidence"
		if len(missing) > 0 {
			reason += " (" + strings.Join(missing, "; ") + ")"
		}
		because = append(because, reason)
	default:
		v.cause = cands[0].cause
		because = append(because, cands[0].because)
		if len(cands) > 1 && cands[1].blame > 0 {
			v.secondary = cands[1].cause
			because = append(because, "also "+cands[1].cause+": "+cands[1].because)
		}
	}
	v.sentence = fmt.Sprintf("%s; slow %s (%s over %.2f s); root cause %s: %s", breakdown(r), v.reason,
		seconds(r, v.reason), v.limit, v.cause, strings.Join(because, "; "))
	// Scrapes that stopped (an engine outage) leave the evidence describing an earlier moment: say so.
	if st.StateAge > staleStateAge(cfg) {
		v.sentence += fmt.Sprintf(" (replica state from %.0f s before the request ended)", st.StateAge)
	}
	return v
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

// isSlow compares the request with its SLO, or the model's rolling quantile where no SLO is set, and names
// the limit broken by the widest margin.
// isSlow compares the request's TTFT, TPOT and e2e with their limits and names the one it exceeds most. A
// limit is the SLO where one is set; otherwise what the request should have taken, from the model's healthy
// baseline (exceeded by both baseline.slow_factor and baseline.slow_margin), or baseline.fallback until the
// model has baseline.min_samples healthy requests. Never "the top 5%": a healthy replica has no slow requests.
func isSlow(r *request, c *circumstances, cfg *Config) (bool, string, float64) {
	expTTFT, expTPOT, expE2E := math.NaN(), math.NaN(), math.NaN()
	if c.baseline != nil {
		expTTFT, expTPOT, expE2E = c.baseline.expected(r, c.state.RunningMax, cfg.Baseline.MinSamples)
	}
	best, reason, limit := 1.0, "", math.NaN()
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
		if ratio := value / threshold; ratio > best {
			best, reason, limit = ratio, name, threshold
		}
	}
	b := cfg.Baseline
	check(slowTTFT, r.ttft, c.limits.TTFT, expTTFT, b.SlowMargin.TTFT, b.Fallback.TTFT)
	check(slowTPOT, r.tpot, c.limits.TPOT, expTPOT, b.SlowMargin.TPOT, b.Fallback.TPOT)
	check(slowE2E, r.e2e, c.limits.E2E, expE2E, b.SlowMargin.E2E, b.Fallback.E2E)
	return reason != "", reason, limit
}

func breakdown(r *request) string {
	var b strings.Builder
	b.Grow(80)
	for _, p := range [...]struct {
		label string
		v     float64
	}{{"queue ", r.queue}, {", prefill ", r.prefill}, {", decode ", r.decode}, {", other ", r.other}, {" of ", r.e2e}} {
		b.WriteString(p.label)
		b.WriteString(sec(p.v))
	}
	return b.String()
}

func seconds(r *request, reason string) string {
	switch reason {
	case slowTTFT:
		return "ttft " + sec(r.ttft)
	case slowTPOT:
		return fmt.Sprintf("%.0f ms per token", 1000*r.tpot)
	}
	return "e2e " + sec(r.e2e)
}

func sec(v float64) string {
	if math.IsNaN(v) {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " s"
}

func num(v float64) string {
	if math.IsNaN(v) {
		return "?"
	}
	return fmt.Sprintf("%.0f", v)
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
