package llmsignalsconnector

import (
	"context"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadata"
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
		in, err := NewFactory().CreateMetricsToMetrics(context.Background(), connectortest.NewNopSettings(metadata.Type), cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		_ = in.Start(context.Background(), componenttest.NewNopHost())
		defer func() { _ = in.Shutdown(context.Background()) }()
		for step := int64(0); step < 4; step++ {
			sec := float64(step * 10)
			md := fleetstatetest.Engine("r1", model, sec, map[string]float64{
				schema.MetricLLMSchedulerRequestsWaiting: waiting * float64(step),
				schema.MetricLLMSchedulerRequestsRunning: running, schema.MetricLLMKVCacheUtilization: kv, schema.MetricLLMSchedulerPreemptions: xid * float64(step),
			})
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

// FuzzRootCauseCounters feeds llm_root_cause's counters with any values (NaN, infinite, negative, huge,
// falling) under any tenant and model names: no evaluation reaches an internal error (the guard would hide a
// panic, so its log line fails the test), and no cost is NaN, infinite or negative.
func FuzzRootCauseCounters(f *testing.F) {
	f.Add(1e3, 1e308, -5.0, 0.5, "acme", "llama", int64(10_000_000_000))
	f.Add(math.NaN(), math.Inf(1), math.Inf(-1), -1e308, "", "", int64(-1)<<62)
	f.Add(9.2e18, 0.0, 1.0, 3.0, "_other", "unknown", int64(0))
	cfg := createDefaultConfig()
	cfg.Interval, cfg.Stale = 10*time.Second, 30*time.Second
	cfg.Cost.DefaultGPUPricePerHour = 2
	f.Fuzz(func(t *testing.T, tokens, cached, requests, seconds float64, tenant, modelName string, offset int64) {
		offset %= int64(time.Hour) // times far off are FuzzScrapes' business; here every input must be costed
		logs, observed := observer.New(zap.ErrorLevel)
		set := connectortest.NewNopSettings(metadata.Type)
		set.Logger = zap.New(logs)
		sink := &consumertest.MetricsSink{}
		in, err := NewFactory().CreateMetricsToMetrics(context.Background(), set, cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		_ = in.Start(context.Background(), componenttest.NewNopHost())
		defer func() { _ = in.Shutdown(context.Background()) }()
		for step := int64(0); step < 5; step++ {
			sec := float64(step * 10)
			md := fleetstatetest.Engine("r1", model, sec, steady(sec))
			shift(md, offset)
			_ = in.ConsumeMetrics(context.Background(), md)
			counters := rootCauseCounters("r1", sec, map[string]tenantTotals{tenant: {
				tokens: tokens * float64(step), cached: cached,
				requests: requests * float64(step%3), queueSeconds: seconds, generated: tokens, prefillSeconds: seconds * float64(step), decodeSeconds: -seconds,
			}})
			rms := counters.ResourceMetrics()
			for i := 0; i < rms.Len(); i++ {
				ms := rms.At(i).ScopeMetrics().At(0).Metrics()
				for j := 0; j < ms.Len(); j++ {
					if ms.At(j).Type() == pmetric.MetricTypeSum {
						for k := 0; k < ms.At(j).Sum().DataPoints().Len(); k++ {
							ms.At(j).Sum().DataPoints().At(k).Attributes().PutStr(schema.AttrGenAIRequestModel, modelName)
						}
					}
				}
			}
			shift(counters, offset)
			_ = in.ConsumeMetrics(context.Background(), counters)
		}
		if observed.Len() > 0 {
			t.Fatalf("internal error: %v", observed.All()[0].ContextMap())
		}
		costPoints := 0
		for _, md := range sink.AllMetrics() {
			for _, name := range []string{schema.MetricLLMCostAmount, schema.MetricLLMCostGPUTime} {
				forEach(md, name, func(dp pmetric.NumberDataPoint) {
					if v := dp.DoubleValue(); !(v >= 0) || math.IsInf(v, 0) {
						t.Fatalf("%s = %v", name, v)
					}
					costPoints++
				})
			}
		}
		if costPoints == 0 {
			t.Fatalf("no cost was written: the checks above saw nothing")
		}
	})
}
