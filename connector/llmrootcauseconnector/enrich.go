package llmrootcauseconnector

import (
	"math"

	"github.com/servescope/servescope/internal/schema"
)

// Evidence attribute keys, named once here from the schema's constants.
const (
	keyWaitingAtArrival = schema.AttrLLMEvidenceQueueWaitingAtArrival
	keyWaitingMax       = schema.AttrLLMEvidenceQueueWaitingMax
	keyQueueGrowth      = schema.AttrLLMEvidenceQueueGrowthPerMinute
	keyKVMax            = schema.AttrLLMEvidenceKVUtilizationMax
	keyPreemptions      = schema.AttrLLMEvidenceKVPreemptions
	keyHitRatio         = schema.AttrLLMEvidencePrefixCacheHitRatio
	keyHitRatioUsual    = schema.AttrLLMEvidencePrefixCacheHitRatioUsual
	keyTenantHitUsual   = schema.AttrLLMEvidenceTenantHitRatioUsual
	keyTopOther         = schema.AttrLLMEvidenceTenantTopOther
	keyTopOtherShare    = schema.AttrLLMEvidenceTenantTopOtherShare
	keyRunningMax       = schema.AttrLLMEvidenceBatchRunningMax
	keyRunningUsual     = schema.AttrLLMEvidenceBatchRunningUsual
	keyTPOTUsual        = schema.AttrLLMEvidenceTpotUsual
	keyTPOTPace         = schema.AttrLLMEvidenceTpotUncontended
	keyPromptP90        = schema.AttrLLMEvidencePromptTokensP90
	keyGenP90           = schema.AttrLLMEvidenceGenerationTokensP90
	keyGPUUtil          = schema.AttrLLMEvidenceGPUUtilizationMean
	keyThrottle         = schema.AttrLLMEvidenceGPUThrottleReasons
	keyXID              = schema.AttrLLMEvidenceGPUXidErrors
	keyClockRatio       = schema.AttrLLMEvidenceGPUSmClockRatio
	keySLO              = schema.AttrLLMEvidenceSlo
	keyCollectiveShare  = schema.AttrLLMEvidenceCollectiveWaitShare
	keyCollectiveSkew   = schema.AttrLLMEvidenceCollectiveSkewMean
	keyCollectiveLate   = schema.AttrLLMEvidenceCollectiveLateRank
	keyCollectiveSeen   = schema.AttrLLMEvidenceCollectiveObservable
	keyStateAge         = schema.AttrLLMEvidenceStateAge
)

// enrichedAttributes is how many attributes enrich writes at most besides the verdict's evidence: seven
// latencies, three token counts, tenant, model, prompt family, slow, slow reason, root cause, secondary cause
// and the evidence sentence.
const enrichedAttributes = 18

// enrich writes the breakdown, the verdict and its evidence onto the request's span. Unknown numbers are
// left out rather than written as zero: a missing attribute reads "no evidence", a zero reads "evidence of none".
func enrich(r *request, v verdict) {
	a := r.span.Attributes()
	// Room for every attribute written below at once: appended one by one, the span's attributes would be
	// copied each time they outgrow their slice. Evidence numbers that are unknown are not written.
	known := 0
	for _, n := range v.numbers {
		if finite(n.value) {
			known++
		}
	}
	a.EnsureCapacity(a.Len() + enrichedAttributes + known + len(v.text) + len(v.flags))
	putNumber := func(key string, value float64) {
		if finite(value) {
			a.PutDouble(key, value)
		}
	}
	putNumber(schema.AttrLLMLatencyQueue, r.queue)
	putNumber(schema.AttrLLMLatencyPrefill, r.prefill)
	putNumber(schema.AttrLLMLatencyDecode, r.decode)
	putNumber(schema.AttrLLMLatencyOther, r.other)
	putNumber(schema.AttrLLMLatencyTtft, r.ttft)
	putNumber(schema.AttrLLMLatencyTpot, r.tpot)
	putNumber(schema.AttrLLMLatencyE2e, r.e2e)
	putInt := func(key string, value float64) {
		if !math.IsNaN(value) {
			a.PutInt(key, int64(value))
		}
	}
	putInt(schema.AttrLLMTokensPrompt, r.promptTokens)
	putInt(schema.AttrLLMTokensGeneration, r.genTokens)
	putInt(schema.AttrLLMTokensCached, r.cachedTokens)
	a.PutStr(schema.AttrLLMTenant, r.tenant)
	// The model the request was judged against: engines such as vLLM leave it off their request span and
	// the connector takes it from the replica's metrics. Written so that the span alone says it (what
	// servescope compare groups by), never over what the engine or gateway wrote.
	if r.model != "" {
		if _, ok := a.Get(schema.AttrGenAIResponseModel); !ok {
			if _, ok := a.Get(schema.AttrGenAIRequestModel); !ok {
				a.PutStr(schema.AttrGenAIRequestModel, r.model)
			}
		}
	}
	if r.family != "" {
		a.PutStr(schema.AttrLLMPromptFamily, r.family)
	}
	a.PutBool(schema.AttrLLMSlow, v.slow)
	if v.slow {
		a.PutStr(schema.AttrLLMSlowReason, v.reason)
	}
	a.PutStr(schema.AttrLLMRootCause, v.cause)
	if v.secondary != "" {
		a.PutStr(schema.AttrLLMRootCauseSecondary, v.secondary)
	}
	a.PutStr(schema.AttrLLMRootCauseEvidence, v.sentence)
	for _, n := range v.numbers {
		putNumber(n.key, n.value)
	}
	for _, t := range v.text {
		a.PutStr(t.key, t.value)
	}
	for _, f := range v.flags {
		a.PutBool(f.key, f.value)
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
