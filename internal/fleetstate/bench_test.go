package fleetstate

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// benchScrape is one replica's engine scrape and its GPU's, a steady workload with moving counters.
func benchScrape(replica string, sec float64) pmetric.Metrics {
	md := fleetstatetest.Engine(replica, "llama-70b", sec, map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting: float64(int(sec) % 5), schema.MetricLLMSchedulerRequestsRunning: 20 + float64(int(sec)%7),
		schema.MetricLLMKVCacheUtilization: 0.6, schema.MetricLLMSchedulerPreemptions: sec / 100,
		schema.MetricLLMPrefixCacheQueries: 2000 * (sec + 1000), schema.MetricLLMPrefixCacheHits: 1500 * (sec + 1000),
		schema.MetricLLMRequestsFinished: 3 * (sec + 1000), schema.MetricLLMTokensPrompt: 2000 * (sec + 1000), schema.MetricLLMTokensGeneration: 300 * (sec + 1000),
	})
	fleetstatetest.GPUWith(sec, fleetstatetest.GPUState{ID: "GPU-" + replica, Owner: replica, Utilization: 0.8, MemoryUtilization: 0.9, SMClockHz: 1.9e9}).
		ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
	return md
}

// BenchmarkObserve is one scrape of one replica into a store whose 15-minute window (10 s scrapes) is full.
func BenchmarkObserve(b *testing.B) {
	const replicas = 100
	s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: 15 * time.Minute})
	sec := -900.0
	for ; sec < 0; sec += 10 {
		for r := 0; r < replicas; r++ {
			s.Observe(benchScrape(fmt.Sprintf("r%03d", r), sec))
		}
	}
	batches := make([]pmetric.Metrics, b.N)
	for i := range batches {
		batches[i] = benchScrape(fmt.Sprintf("r%03d", i%replicas), sec+float64(i/replicas)*10)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Observe(batches[i])
	}
}

// BenchmarkSummarize is one request's summary (a few seconds long) on a replica with a full window.
func BenchmarkSummarize(b *testing.B) {
	s := New(Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}, Window: 15 * time.Minute})
	for sec := -900.0; sec <= 0; sec += 10 {
		s.Observe(benchScrape("r000", sec))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := -800 + float64(i%700)
		_ = s.Summarize("r000", at(start), at(start+4))
	}
}
