package llmrootcauseconnector

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// appendFixed must write what strconv writes, including where its fast path must not be taken: halves that
// are not exactly halves in binary, exact halves (strconv rounds those to even), negative zero, huge values.
func TestAppendFixedWritesWhatStrconvWrites(t *testing.T) {
	values := []float64{
		0, math.Copysign(0, -1), 0.005, 0.015, 0.125, 0.375, 1.005, 1.115, 2.675, 0.5, 1.5, 2.5,
		0.0049999999, 99.995, 999999.995, 1e9, 1e12, 123456789.125, -1.25, -0.001, math.NaN(), math.Inf(1),
		math.Inf(-1), math.SmallestNonzeroFloat64, math.MaxFloat64, 1.0 / 3, 2.0 / 3,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		// Magnitudes from 1e-4 to 1e10, and values within a hair of a half at each precision.
		v := math.Pow(10, rng.Float64()*14-4)
		values = append(values, v, (math.Round(v*1000)+0.5)/1000, math.Nextafter((math.Round(v*100)+0.5)/100, 0))
	}
	for _, v := range values {
		for decimals := 0; decimals <= 3; decimals++ {
			want := strconv.FormatFloat(v, 'f', decimals, 64)
			if got := string(appendFixed(nil, v, decimals)); got != want {
				t.Fatalf("appendFixed(%v, %d) = %q, strconv writes %q", v, decimals, got, want)
			}
		}
	}
}

func BenchmarkAppendFixed(b *testing.B) {
	buf := make([]byte, 0, 32)
	for i := 0; b.Loop(); i++ {
		buf = appendFixed(buf[:0], float64(i%5000)*0.00137, 2)
	}
}
