package llmrootcauseconnector

import (
	"math"
	"time"
)

// rollingQuantiles estimates quantiles of a positive quantity over a sliding window, in bounded memory: a
// log-bucketed histogram (about 5% relative error) per slice of the window, slices rotated by event time.
// Queries merge the slices; results are cached until enough new samples arrive, so a query per span is cheap.
type rollingQuantiles struct {
	slices    [rollingSlices][sketchBuckets]uint32
	counts    [rollingSlices]int
	sliceLen  int64 // ns
	current   int64 // index of the newest slice, in units of sliceLen since the epoch
	sinceMemo int
	memo      map[float64]float64
}

const (
	rollingSlices = 4
	sketchBuckets = 400
	sketchGamma   = 1.1
	sketchMin     = 1e-6 // values below share the first bucket
	memoEvery     = 16
)

var logGamma = math.Log(sketchGamma)

func newRollingQuantiles(window time.Duration) *rollingQuantiles {
	return &rollingQuantiles{sliceLen: int64(window) / rollingSlices, memo: map[float64]float64{}}
}

func bucketOf(v float64) int {
	if !(v > sketchMin) { // NaN included
		return 0
	}
	// Compare as a float before converting: v/sketchMin overflows to +Inf for v near MaxFloat64, and
	// int(+Inf) is not a large index but an arbitrary (negative, on amd64) one.
	b := math.Log(v/sketchMin)/logGamma + 1
	if !(b < sketchBuckets-1) {
		return sketchBuckets - 1
	}
	return int(b)
}

func bucketValue(b int) float64 {
	if b == 0 {
		return sketchMin
	}
	// the geometric middle of the bucket's bounds
	return sketchMin * math.Pow(sketchGamma, float64(b)-0.5)
}

// rotate moves the window so that it ends at the slice holding t, clearing the slices that fell out.
func (r *rollingQuantiles) rotate(t int64) {
	idx := t / r.sliceLen
	if idx <= r.current {
		return
	}
	steps := idx - r.current
	if steps > rollingSlices {
		steps = rollingSlices
	}
	for i := int64(1); i <= steps; i++ {
		s := (r.current + i) % rollingSlices
		r.slices[s] = [sketchBuckets]uint32{}
		r.counts[s] = 0
	}
	r.current = idx
	r.sinceMemo = memoEvery // the window changed: recompute on the next query
}

// add records v observed at t (unix ns). Values too old for the window are ignored.
func (r *rollingQuantiles) add(v float64, t int64) {
	// A span's own numbers and times are untrusted input: NaN, infinite or negative values, and times before
	// 1970 (a uint64 timestamp past int64), are not learned from.
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || t < 0 {
		return
	}
	r.rotate(t)
	idx := t / r.sliceLen
	if idx <= r.current-rollingSlices {
		return
	}
	s := idx % rollingSlices
	r.slices[s][bucketOf(v)]++
	r.counts[s]++
	r.sinceMemo++
}

func (r *rollingQuantiles) count() int {
	n := 0
	for _, c := range r.counts {
		n += c
	}
	return n
}

// quantile returns the q-quantile, or NaN with fewer than minSamples samples in the window.
func (r *rollingQuantiles) quantile(q float64, minSamples int) float64 {
	n := r.count()
	if n < minSamples || n == 0 {
		return math.NaN()
	}
	if r.sinceMemo >= memoEvery {
		clear(r.memo)
		r.sinceMemo = 0
	}
	if v, ok := r.memo[q]; ok {
		return v
	}
	rank := int(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	seen := 0
	v := math.NaN()
	for b := 0; b < sketchBuckets && math.IsNaN(v); b++ {
		for s := 0; s < rollingSlices; s++ {
			seen += int(r.slices[s][b])
		}
		if seen >= rank {
			v = bucketValue(b)
		}
	}
	r.memo[q] = v
	return v
}

// modelBaseline is what "usual" means for one model.
type modelBaseline struct {
	ttft, tpot, e2e         *rollingQuantiles
	promptTokens, genTokens *rollingQuantiles
	prefillPerUncachedToken *rollingQuantiles
}

func newModelBaseline(window time.Duration) *modelBaseline {
	return &modelBaseline{ttft: newRollingQuantiles(window), tpot: newRollingQuantiles(window), e2e: newRollingQuantiles(window),
		promptTokens: newRollingQuantiles(window), genTokens: newRollingQuantiles(window), prefillPerUncachedToken: newRollingQuantiles(window)}
}

func (b *modelBaseline) add(r *request) {
	t := r.end
	b.ttft.add(r.ttft, t)
	b.tpot.add(r.tpot, t)
	b.e2e.add(r.e2e, t)
	b.promptTokens.add(r.promptTokens, t)
	b.genTokens.add(r.genTokens, t)
	if u := r.uncachedPrompt(); u > 0 && !math.IsNaN(r.prefill) {
		b.prefillPerUncachedToken.add(r.prefill/u, t)
	}
}

// shareBaseline is a windowed ratio of two sums (cached prompt tokens over prompt tokens), kept as the
// current and previous half-windows so the figure always covers between half a window and a whole one.
type shareBaseline struct {
	num, den      [2]float64
	samples       [2]int
	half, current int64
}

func (s *shareBaseline) add(num, den float64, t int64) {
	if t < 0 || math.IsNaN(num) || math.IsNaN(den) || math.IsInf(num, 0) || math.IsInf(den, 0) {
		return
	}
	idx := t / s.half
	switch {
	case idx == s.current+1:
		s.num[0], s.den[0], s.samples[0] = s.num[1], s.den[1], s.samples[1]
		s.num[1], s.den[1], s.samples[1] = 0, 0, 0
		s.current = idx
	case idx > s.current+1:
		s.num, s.den, s.samples = [2]float64{}, [2]float64{}, [2]int{}
		s.current = idx
	case idx < s.current-1:
		return
	}
	s.num[1] += num
	s.den[1] += den
	s.samples[1]++
}

// ratio is the share over the window, NaN with fewer than minSamples samples.
func (s *shareBaseline) ratio(minSamples int) float64 {
	n := s.samples[0] + s.samples[1]
	den := s.den[0] + s.den[1]
	if n < minSamples || den <= 0 {
		return math.NaN()
	}
	return (s.num[0] + s.num[1]) / den
}
