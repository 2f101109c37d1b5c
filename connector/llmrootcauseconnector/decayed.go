package llmrootcauseconnector

import (
	"math"
	"time"
)

// decayedQuantiles estimates quantiles of a positive quantity over the recent past, in bounded memory: a
// log-bucketed histogram (about 5% relative error) whose counts decay with a half-life. Unlike a sliding
// window, it never empties: when an incident stops the flow of healthy samples, the healthy levels stay
// what they were, fading only over hours. Weights use forward decay (a sample at t weighs exp(lambda*(t-L)))
// so adding is one bucket update; they are rescaled before they could overflow.
type decayedQuantiles struct {
	buckets   [sketchBuckets]float64
	total     float64
	lambda    float64 // per ns
	landmark  int64
	latest    int64
	anchored  bool
	sinceMemo int
	// memo holds the quantiles asked since it was last cleared (every memoEvery samples): the few a baseline
	// asks (median, deciles, the long quantile) in place, any others in more.
	memo    [memoSlots]quantileMemo
	memoN   int
	more    map[float64]float64
	countOK bool    // counted is count() of the current weights
	counted float64 // (count computes an exponential, and is asked before every quantile)
}

type quantileMemo struct{ q, v float64 }

const memoSlots = 8

const (
	sketchBuckets = 400
	sketchGamma   = 1.1
	sketchMin     = 1e-6 // values below share the first bucket
	memoEvery     = 16
	// rescaleAbove keeps forward-decayed weights far from overflow (exp(700) is near MaxFloat64).
	rescaleAbove = 1e200
)

var logGamma = math.Log(sketchGamma)

func newDecayedQuantiles(halfLife time.Duration) *decayedQuantiles {
	return &decayedQuantiles{lambda: math.Ln2 / float64(max(halfLife, time.Second))}
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

// add records v observed at t (unix ns, the connector's clock). NaN, infinite and negative values are not
// learned from.
func (d *decayedQuantiles) add(v float64, t int64) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return
	}
	if !d.anchored {
		d.landmark, d.latest, d.anchored = t, t, true
	}
	d.latest = max(d.latest, t)
	w := math.Exp(d.lambda * float64(t-d.landmark))
	if w > rescaleAbove || math.IsInf(w, 0) {
		d.rescale(t)
		w = 1
	}
	d.buckets[bucketOf(v)] += w
	d.total += w
	d.sinceMemo++
	d.countOK = false
}

// rescale moves the landmark to t, dividing every weight by the weight of an event at t.
func (d *decayedQuantiles) rescale(t int64) {
	f := math.Exp(-d.lambda * float64(t-d.landmark))
	for i := range d.buckets {
		d.buckets[i] *= f
	}
	d.total *= f
	d.landmark = t
	d.countOK = false
}

// count is the effective number of samples: each weighs 1 when new and half as much a half-life later.
func (d *decayedQuantiles) count() float64 {
	if d.total == 0 {
		return 0
	}
	if !d.countOK {
		d.counted, d.countOK = d.total/math.Exp(d.lambda*float64(d.latest-d.landmark)), true
	}
	return d.counted
}

// quantile returns the q-quantile, or NaN with fewer than minSamples effective samples.
func (d *decayedQuantiles) quantile(q float64, minSamples int) float64 {
	if d.total == 0 || d.count() < float64(minSamples) {
		return math.NaN()
	}
	if d.sinceMemo >= memoEvery {
		d.memoN = 0
		clear(d.more)
		d.sinceMemo = 0
	}
	for _, m := range d.memo[:d.memoN] {
		if m.q == q {
			return m.v
		}
	}
	if v, ok := d.more[q]; ok {
		return v
	}
	rank := q * d.total
	seen := 0.0
	v := bucketValue(sketchBuckets - 1)
	for b := range sketchBuckets {
		seen += d.buckets[b]
		if seen >= rank && seen > 0 {
			v = bucketValue(b)
			break
		}
	}
	d.remember(q, v)
	return v
}

func (d *decayedQuantiles) remember(q, v float64) {
	if d.memoN < memoSlots {
		d.memo[d.memoN] = quantileMemo{q, v}
		d.memoN++
		return
	}
	if d.more == nil {
		d.more = map[float64]float64{}
	}
	d.more[q] = v
}

// decayedRatio is a ratio of two decayed sums (cached prompt tokens over prompt tokens), with the effective
// number of samples behind it.
type decayedRatio struct {
	num, den, samples float64
	lambda            float64
	at                int64
	anchored          bool
}

func newDecayedRatio(halfLife time.Duration) *decayedRatio {
	return &decayedRatio{lambda: math.Ln2 / float64(max(halfLife, time.Second))}
}

func (s *decayedRatio) add(num, den float64, t int64) {
	if math.IsNaN(num) || math.IsNaN(den) || math.IsInf(num, 0) || math.IsInf(den, 0) || den < 0 {
		return
	}
	s.decayTo(t)
	s.num += num
	s.den += den
	s.samples++
}

// decayTo ages the sums to t; a sample older than the sums is added as if new (the clock is the connector's
// own, so that only happens by a few microseconds).
func (s *decayedRatio) decayTo(t int64) {
	if s.anchored && t > s.at {
		f := math.Exp(-s.lambda * float64(t-s.at))
		s.num, s.den, s.samples = s.num*f, s.den*f, s.samples*f
	}
	if !s.anchored || t > s.at {
		s.at, s.anchored = t, true
	}
}

// ratio is the share, NaN with fewer than minSamples effective samples.
func (s *decayedRatio) ratio(minSamples int) float64 {
	if s.samples < float64(minSamples) || s.den <= 0 {
		return math.NaN()
	}
	return s.num / s.den
}
