package llmnormalizeprocessor

import (
	"context"
	"path"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/servescope/servescope/internal/datapoints"
	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/processor/llmnormalizeprocessor/internal/metadata"
)

// Each iteration processes one fresh copy of a real scrape; copies are made outside the timer in batches,
// so ns/datapoint is the processor's own cost. BenchmarkPassthroughFloor walks the same data the same way
// (every metric, every data point, every attribute) without changing it: the distance between the two is
// what normalizing costs beyond touching the data at all.
const copiesPerBatch = 128

func benchCaptures(b *testing.B, run func(b *testing.B, md pmetric.Metrics)) {
	for _, rel := range fixtures.Glob(b, "vllm/*.txt") {
		b.Run(path.Base(rel), func(b *testing.B) {
			md := enginescrape.ExpositionToMetrics(fixtures.Read(b, rel), time.Now())
			md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineVLLM)
			points := md.DataPointCount()
			copies := make([]pmetric.Metrics, copiesPerBatch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%copiesPerBatch == 0 {
					b.StopTimer()
					for j := range copies {
						copies[j] = pmetric.NewMetrics()
						md.CopyTo(copies[j])
					}
					runtime.GC() // the copies' garbage is not the processor's to collect
					b.StartTimer()
				}
				run(b, copies[i%copiesPerBatch])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(points), "ns/datapoint")
		})
	}
}

func BenchmarkNormalize(b *testing.B) {
	n, err := newNormalizer(&Config{}, processortest.NewNopSettings(metadata.Type).TelemetrySettings)
	if err != nil {
		b.Fatal(err)
	}
	benchCaptures(b, func(b *testing.B, md pmetric.Metrics) {
		if _, err := n.processMetrics(context.Background(), md); err != nil {
			b.Fatal(err)
		}
	})
}

var sink int

func BenchmarkPassthroughFloor(b *testing.B) {
	benchCaptures(b, func(_ *testing.B, md pmetric.Metrics) {
		rms := md.ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			sms := rms.At(i).ScopeMetrics()
			for j := 0; j < sms.Len(); j++ {
				ms := sms.At(j).Metrics()
				for k := 0; k < ms.Len(); k++ {
					walk(ms.At(k))
				}
			}
		}
	})
}

// walk reads every data point's attributes, as any per-point processor must.
func walk(m pmetric.Metric) {
	sink += len(m.Name())
	visit := func(attrs pcommon.Map) {
		for k, v := range attrs.All() {
			sink += len(k) + int(v.Type())
		}
	}
	datapoints.EachAttributes(m, visit)
}
