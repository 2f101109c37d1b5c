package enginescrape

import (
	"path"
	"testing"
	"time"

	"github.com/servescope/servescope/internal/fixtures"
)

// BenchmarkExpositionToMetrics is a scrape's CPU cost without the network: parse a real capture and convert
// it to OTLP metrics with start times.
func BenchmarkExpositionToMetrics(b *testing.B) {
	for _, rel := range fixtures.Glob(b, "vllm/*.txt") {
		body := fixtures.Read(b, rel)
		b.Run(path.Base(rel), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			points := ExpositionToMetrics(body, time.Now()).DataPointCount()
			for b.Loop() {
				ExpositionToMetrics(body, time.Now())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(points), "ns/datapoint")
		})
	}
}
