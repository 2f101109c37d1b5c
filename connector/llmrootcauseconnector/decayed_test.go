package llmrootcauseconnector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The quantiles and the count a sketch remembers between samples are what it would work out afresh, for
// more quantiles than it keeps in place, and they are worked out again once memoEvery samples have come.
func TestSketchRemembersWhatItWouldWorkOut(t *testing.T) {
	fill := func(d *decayedQuantiles, from, to int) {
		for i := from; i < to; i++ {
			d.add(float64(i%97)+0.5, int64(i)*int64(time.Second))
		}
	}
	fresh := func(to int, q float64) (float64, float64) {
		d := newDecayedQuantiles(time.Minute)
		fill(d, 0, to)
		return d.quantile(q, 1), d.count()
	}
	qs := make([]float64, 0, 2*memoSlots)
	for i := range 2 * memoSlots {
		qs = append(qs, float64(i+1)/float64(2*memoSlots+1))
	}
	d := newDecayedQuantiles(time.Minute)
	fill(d, 0, 200)
	for range 2 { // worked out, then remembered
		for _, q := range qs {
			want, count := fresh(200, q)
			assert.Equal(t, want, d.quantile(q, 1), "q=%v", q)
			assert.Equal(t, count, d.count())
		}
	}
	fill(d, 200, 200+memoEvery) // enough new samples: what was remembered is worked out again
	for _, q := range qs {
		want, count := fresh(200+memoEvery, q)
		assert.Equal(t, want, d.quantile(q, 1), "q=%v after new samples", q)
		assert.Equal(t, count, d.count())
	}
}
