package fleetsim

import "sort"

// quantity is something an engine observes into a histogram; which ones an engine exposes, and with which
// buckets, is up to its wire format.
type quantity int

const (
	qTTFT quantity = iota
	qE2E
	qQueue
	qPrefill
	qDecode
	qInference
	qTPOT
	qITL
	qPromptTokens
	qGenerationTokens
	qMaxTokens
	qParamsN
	qPreemptions
	qPrefillComputed
	qIterationTokens
	qKVBlockLifetime // KV-cache residency of evicted blocks (vLLM --kv-cache-metrics)
	qKVBlockIdle
	qKVBlockReuseGap
	numQuantities
)

// histogram keeps per-bucket counts; the wire formats render them cumulatively.
type histogram struct {
	bounds []float64
	counts []uint64 // len(bounds)+1, the last is +Inf
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	if h == nil {
		return
	}
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v: le is inclusive
	h.counts[i]++
	h.sum += v
	h.count++
}

// cumulative returns the count at or below each bound, then the total (+Inf).
func (h *histogram) cumulative() []uint64 {
	out := make([]uint64, len(h.counts))
	var acc uint64
	for i, c := range h.counts {
		acc += c
		out[i] = acc
	}
	return out
}

// engineStats are a replica's counters since it started; they only grow.
type engineStats struct {
	hist [numQuantities]*histogram

	promptTokens     float64 // prompts of requests that produced their first token, cached included
	promptComputed   float64 // of those, tokens computed rather than found cached
	cachedTokens     float64
	generationTokens float64
	prefixQueries    float64 // tokens looked up in the prefix cache at admission
	prefixHits       float64
	preemptions      float64
	finished         map[string]float64 // by finish reason
	requests         float64
	steps            float64
	stepSeconds      float64
	stepSeqs         float64 // sum over steps of the batch's requests (mean batch = stepSeqs/steps)
	maxStepTokens    float64
	flopsPerGPU      float64
	readBytesPerGPU  float64
	writeBytesPerGPU float64
}

func newEngineStats(bounds map[quantity][]float64) *engineStats {
	s := &engineStats{finished: map[string]float64{}}
	for q, b := range bounds {
		s.hist[q] = newHistogram(b)
	}
	return s
}

func (s *engineStats) observe(q quantity, v float64) { s.hist[q].observe(v) }

// observeEviction records an evicted block's residency (kept only by engines that expose it).
func (s *engineStats) observeEviction(ev blockResidency) {
	s.observe(qKVBlockLifetime, ev.lifetime)
	s.observe(qKVBlockIdle, ev.idle)
	for _, g := range ev.gaps[:ev.nGaps] {
		s.observe(qKVBlockReuseGap, g)
	}
}

// Bucket sets shared by engines that copied vLLM's.
var (
	bucketsTTFT = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	bucketsITL  = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	bucketsReq  = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680}
)

// buckets125 is vLLM's 1-2-5 series for token counts, up to limit.
func buckets125(limit int) []float64 {
	var out []float64
	for m := 1; ; m *= 10 {
		for _, k := range []int{1, 2, 5} {
			if k*m > limit {
				return out
			}
			out = append(out, float64(k*m))
		}
	}
}
