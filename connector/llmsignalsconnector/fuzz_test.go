package llmsignalsconnector

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// FuzzScrapes feeds engine and GPU scrapes with any values and times (NaN, negative, out of order, before
// 1970): evaluation never panics and every score it emits stays in [0, 1].
func FuzzScrapes(f *testing.F) {
	f.Add(3.0, 16.0, 0.5, 0.9, 0.95, 1.0, int64(10_000_000_000))
	f.Add(-1.0, 1e300, 2.0, -0.5, 7.0, -3.0, int64(-1)<<62)
	f.Add(-1.0, -4.0, -0.3, 1.5, -2.0, 0.0, int64(0))
	cfg := createDefaultConfig()
	cfg.Interval, cfg.Stale = 10*time.Second, 30*time.Second
	f.Fuzz(func(t *testing.T, waiting, running, kv, util, mem, xid float64, offset int64) {
		// a fresh connector per input: one input's clock must not hide the next one's evaluations
		sink := &consumertest.MetricsSink{}
		in, err := NewFactory().CreateMetricsToMetrics(context.Background(), connectortest.NewNopSettings(componentType), cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		_ = in.Start(context.Background(), componenttest.NewNopHost())
		defer func() { _ = in.Shutdown(context.Background()) }()
		for step := int64(0); step < 4; step++ {
			sec := float64(step * 10)
			md := fleetstatetest.Engine("r1", model, sec, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: waiting * float64(step),
				schema.MetricLLMSchedulerRequestsRunning: running, schema.MetricLLMKVCacheUtilization: kv, schema.MetricLLMSchedulerPreemptions: xid * float64(step)})
			shift(md, offset)
			if err := in.ConsumeMetrics(context.Background(), md); err != nil {
				t.Fatal(err)
			}
			gpu := fleetstatetest.GPUWith(sec, fleetstatetest.GPUState{ID: "G", Owner: "r1", Utilization: util, MemoryUtilization: mem, XIDErrors: xid * float64(step)})
			shift(gpu, offset)
			if err := in.ConsumeMetrics(context.Background(), gpu); err != nil {
				t.Fatal(err)
			}
		}
		for _, md := range sink.AllMetrics() {
			for _, name := range []string{schema.MetricLLMReplicaHealthScore, schema.MetricLLMReplicaRoutingScore} {
				forEach(md, name, func(dp pmetric.NumberDataPoint) {
					if v := dp.DoubleValue(); !(v >= 0 && v <= 1) {
						t.Fatalf("%s = %v", name, v)
					}
				})
			}
		}
	})
}

// shift moves every data point's time by offset nanoseconds.
func shift(md pmetric.Metrics, offset int64) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		ms := rms.At(i).ScopeMetrics().At(0).Metrics()
		for j := 0; j < ms.Len(); j++ {
			var dps pmetric.NumberDataPointSlice
			switch ms.At(j).Type() {
			case pmetric.MetricTypeGauge:
				dps = ms.At(j).Gauge().DataPoints()
			case pmetric.MetricTypeSum:
				dps = ms.At(j).Sum().DataPoints()
			default:
				continue
			}
			for k := 0; k < dps.Len(); k++ {
				dps.At(k).SetTimestamp(pcommon.Timestamp(uint64(int64(dps.At(k).Timestamp()) + offset)))
			}
		}
	}
}
