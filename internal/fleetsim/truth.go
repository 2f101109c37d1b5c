package fleetsim

import (
	"encoding/hex"
	"math"
	"sort"
)

// Truth is the ground-truth record of one finished request: what happened to it and why it was slow,
// measured by the simulator. One JSON object per line in the ground-truth file.
type Truth struct {
	RequestID string `json:"request_id"`
	TraceID   string `json:"trace_id"`
	// Replica is the simulator's name for it (vllm-0); Instance is its service.instance.id, the host:port of
	// its engine endpoint when served (else the name).
	Replica  string `json:"replica"`
	Instance string `json:"instance"`
	Engine   string `json:"engine"`
	Tenant   string `json:"tenant"`
	Family   string `json:"family"`
	// ArrivalS is when the gateway received it, in seconds since the start; add to the epoch for wall time.
	ArrivalS         float64 `json:"arrival_s"`
	PromptTokens     int     `json:"prompt_tokens"`
	CachedTokens     int     `json:"cached_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	Preemptions      int     `json:"preemptions"`
	QueueS           float64 `json:"queue_s"`
	PrefillS         float64 `json:"prefill_s"`
	DecodeS          float64 `json:"decode_s"`
	TTFTS            float64 `json:"ttft_s"`
	TPOTS            float64 `json:"tpot_s"`
	E2ES             float64 `json:"e2e_s"`
	// Slow is whether it broke an SLO; SlowReasons say which (ttft, tpot, e2e).
	Slow        bool     `json:"slow"`
	SlowReasons []string `json:"slow_reasons,omitempty"`
	// Cause is the largest measured excess among the phases that made it slow (none when it was not slow,
	// unknown when nothing measured explains it); Secondary the next largest, when it matters.
	Cause     string `json:"cause"`
	Secondary string `json:"secondary,omitempty"`
	// ExcessS is every measured excess, in seconds, by cause.
	ExcessS map[string]float64 `json:"excess_s"`
	// FaultActive says whether the scenario's fault was on when it arrived.
	FaultActive bool `json:"fault_active"`
	// Given is 1 + the request's index in Config.Workload, 0 for a request the scenario's tenants sent.
	Given int `json:"given,omitempty"`
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// truthFor finishes the request's attribution and builds its record.
//
// Measured excess, in seconds, by cause:
//   - queue_saturation / tenant_contention / kv_cache_pressure: each stretch of time it waited for its first
//     scheduling, charged to why the queue did not move at that step: the head could not get KV blocks
//     (kv_cache_pressure), or the batch was full of work and one other tenant held most of it
//     (tenant_contention), or not (queue_saturation);
//   - kv_cache_pressure also: from each preemption until it had recomputed what it lost;
//   - prefix_cache_miss: prompt tokens its family's shared prefix normally has cached but it did not find,
//     times the cost of prefilling a token;
//   - long_prompt: prompt tokens it had to compute beyond the reference prompt, times the same cost;
//   - long_generation: output tokens beyond the reference output, times the reference inter-token time;
//   - gpu_throttling: for each of its steps, how much longer the step took for throttled clocks;
//   - collective_wait: for each of its steps, how much longer it took waiting for a straggler rank;
//   - decode_contention: for each decode step, how much longer it took than a lone request's step.
func (f *Fleet) truthFor(r *request) Truth {
	rp := r.replica
	ref := f.cfg.Reference
	r.excess[phasePrefill][CausePrefixCacheMiss] += float64(r.missed) * f.refPrefillPerToken
	own := r.prompt - r.cached - r.missed
	r.excess[phasePrefill][CauseLongPrompt] += float64(max(0, own-ref.PromptTokens)) * f.refPrefillPerToken
	r.excess[phaseDecode][CauseLongGeneration] += float64(max(0, r.generated-ref.OutputTokens)) * f.refITL

	tr := Truth{
		RequestID: r.id, TraceID: hex.EncodeToString(r.traceID[:]),
		Replica: rp.name, Instance: rp.instance, Engine: rp.engine, Tenant: r.tenant, Family: r.family,
		ArrivalS: round6(r.gatewayStart), PromptTokens: r.prompt, CachedTokens: r.cached,
		CompletionTokens: r.generated, Preemptions: r.preemptions, Given: r.given,
		QueueS:      round6(r.scheduled - r.queued),
		PrefillS:    round6(r.firstToken - r.scheduled),
		DecodeS:     round6(r.lastToken - r.firstToken),
		TTFTS:       round6(r.firstToken - r.arrival),
		E2ES:        round6(r.lastToken - r.arrival),
		ExcessS:     map[string]float64{},
		FaultActive: f.faultActive(r.gatewayStart),
	}
	if r.generated > 1 {
		tr.TPOTS = round6((r.lastToken - r.firstToken) / float64(r.generated-1))
	}
	var total [numMeasuredCauses]float64
	for c := Cause(0); c < numMeasuredCauses; c++ {
		total[c] = r.excess[phasePrefill][c] + r.excess[phaseDecode][c]
		if v := round6(total[c]); v >= 0.001 {
			tr.ExcessS[c.String()] = v
		}
	}

	slo := f.cfg.SLO
	slowTTFT := tr.TTFTS > slo.TTFT
	slowTPOT := r.generated > 1 && tr.TPOTS > slo.TPOT
	slowE2E := tr.E2ES > slo.E2E
	tr.Slow = slowTTFT || slowTPOT || slowE2E
	if !tr.Slow {
		tr.Cause = CauseNone.String()
		return tr
	}
	// Only the excess of the phases that broke an SLO can explain it: a slow first token is not explained
	// by a long answer, a slow token rate not by the length of either.
	var cand [numMeasuredCauses]float64
	var span float64
	if slowE2E {
		cand = total
		span = tr.E2ES
		tr.SlowReasons = append(tr.SlowReasons, "e2e")
	}
	if slowTTFT {
		for c := range cand {
			cand[c] = math.Max(cand[c], r.excess[phasePrefill][c])
		}
		span = math.Max(span, tr.TTFTS)
		tr.SlowReasons = append([]string{"ttft"}, tr.SlowReasons...)
	}
	if slowTPOT {
		for c := range cand {
			if Cause(c) != CauseLongGeneration {
				cand[c] = math.Max(cand[c], r.excess[phaseDecode][c])
			}
		}
		span = math.Max(span, tr.DecodeS)
		tr.SlowReasons = append(tr.SlowReasons, "tpot")
		sort.Strings(tr.SlowReasons)
	}
	order := make([]Cause, numMeasuredCauses)
	for i := range order {
		order[i] = Cause(i)
	}
	sort.SliceStable(order, func(i, j int) bool { return cand[order[i]] > cand[order[j]] })
	best := order[0]
	// Below a tenth of the slow span nothing measured explains it: the honest label is unknown.
	if cand[best] < 0.1*span {
		tr.Cause = CauseUnknown.String()
		return tr
	}
	tr.Cause = best.String()
	if second := order[1]; cand[second] >= 0.25*cand[best] && cand[second] >= 0.1*span {
		tr.Secondary = second.String()
	}
	return tr
}
