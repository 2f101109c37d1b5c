package llmrootcauseconnector

import (
	"math"
	"time"
)

// modelBaseline is what "usual" and "expected" mean for one model, learned from requests that were not slow
// only: an incident, however long, never becomes the usual. Every level decays with baseline.half_life.
type modelBaseline struct {
	ttft, tpot, e2e         *decayedQuantiles
	promptTokens, genTokens *decayedQuantiles
	prefillPerUncachedToken *decayedQuantiles
	// The expected time of a request is built from its phases' healthy paces: time in queue, the TTFT
	// beyond queue and prefill (tokenization, scheduling, the first step), TPOT at the batch size it ran
	// in, and the rest of e2e (detokenization, the HTTP hop).
	queue, ttftOverhead, other *decayedQuantiles
	tpotByBatch                [batchBuckets]*decayedQuantiles
	// running is the batch the model's healthy requests ran in: how big a batch gets when nothing is wrong.
	running *decayedQuantiles
}

// batchBuckets split TPOT by the running batch the request shared (1, 2-3, 4-7, ... 128+): decode time per
// token grows with the batch, so a request in a batch of the size the model runs when healthy is not slow
// for being in it. A batch bigger than healthy ones get (healthyBatchQuantile of them) is a decode batch
// that is too big: its requests are judged at the pace of the biggest healthy batch, and decode_contention
// names them.
const (
	batchBuckets         = 8
	healthyBatchQuantile = 0.9
)

func batchBucket(running float64) int {
	if !(running >= 1) {
		return -1
	}
	return min(int(math.Log2(running)), batchBuckets-1)
}

func newModelBaseline(halfLife time.Duration) *modelBaseline {
	q := func() *decayedQuantiles { return newDecayedQuantiles(halfLife) }
	b := &modelBaseline{
		ttft: q(), tpot: q(), e2e: q(), promptTokens: q(), genTokens: q(), prefillPerUncachedToken: q(),
		queue: q(), ttftOverhead: q(), other: q(), running: q(),
	}
	for i := range b.tpotByBatch {
		b.tpotByBatch[i] = q()
	}
	return b
}

// add learns from a request that was not slow, at t (the connector's clock); running is the batch it ran in.
func (b *modelBaseline) add(r *request, running float64, t int64) {
	b.ttft.add(r.ttft, t)
	b.tpot.add(r.tpot, t)
	b.e2e.add(r.e2e, t)
	b.promptTokens.add(r.promptTokens, t)
	b.genTokens.add(r.genTokens, t)
	if u := r.uncachedPrompt(); u > 0 && !math.IsNaN(r.prefill) {
		b.prefillPerUncachedToken.add(r.prefill/u, t)
	}
	b.queue.add(r.queue, t)
	b.other.add(r.other, t)
	if !math.IsNaN(r.ttft) {
		b.ttftOverhead.add(math.Max(0, r.ttft-sumKnown(r.queue, r.prefill)), t)
	}
	if i := batchBucket(running); i >= 0 {
		b.tpotByBatch[i].add(r.tpot, t)
		b.running.add(running, t)
	}
}

// expected is what a request like r should have taken on this model when healthy: ttft (queue, prefill of
// its uncached prompt, overhead), tpot (at its batch size) and e2e; NaN where the baseline does not know
// enough yet. ttft and e2e are never above the model's usual ones by more than the request's own size
// explains, and never below: a long prompt that prefilled at the usual pace is as expected, and still slow
// against the usual first token (its rule, long_prompt, says why).
func (b *modelBaseline) expected(r *request, running float64, minSamples int) (ttft, tpot, e2e float64) {
	med := func(d *decayedQuantiles) float64 { return d.quantile(0.5, minSamples) }
	queue := b.queue.quantile(0.9, minSamples)
	prefill := math.NaN()
	if u := r.uncachedPrompt(); !math.IsNaN(u) {
		prefill = u * med(b.prefillPerUncachedToken)
	}
	ttft = queue + prefill + med(b.ttftOverhead)
	tpot = med(b.tpot)
	if i := batchBucket(running); i >= 0 {
		if healthy := batchBucket(b.running.quantile(healthyBatchQuantile, minSamples)); healthy >= 0 && i > healthy {
			i = healthy
		}
		if v := med(b.tpotByBatch[i]); !math.IsNaN(v) {
			tpot = v
		}
	}
	decode := math.NaN()
	if r.genTokens > 1 {
		decode = (r.genTokens - 1) * tpot
	} else if r.genTokens >= 0 {
		decode = 0
	}
	e2e = queue + prefill + decode + med(b.other)
	// A first token is also judged against the usual one (its 90th percentile): a prompt far longer than
	// usual keeps a user waiting however fast it prefilled, and long_prompt then says why. E2E and TPOT
	// scale with the request's own size only: a long answer at the usual pace is not slow.
	if usual := b.ttft.quantile(0.9, minSamples); math.IsNaN(ttft) || usual < ttft {
		ttft = usual
	}
	return ttft, tpot, e2e
}
