package llmrootcauseconnector

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadata"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
)

// benchBatches are request spans as a gateway sees a fleet: 100 requests per batch (gateway span plus the
// engine's llm_request span each), 8 replicas, 50 tenants, a mix of fast and slow requests.
func benchBatches(n int) []ptrace.Traces {
	out := make([]ptrace.Traces, n)
	for b := range out {
		calls := make([]call, 100)
		for i := range calls {
			k := b*100 + i
			calls[i] = call{
				replica: fmt.Sprintf("r%d", k%8), tenant: fmt.Sprintf("tenant-%d", k%50), family: fmt.Sprintf("family-%d", k%7),
				id: fmt.Sprintf("cmpl-%d", k), start: float64(k) / 100, queue: 0.01 + float64(k%13)*0.2, prefill: 0.1 + float64(k%5)*0.1,
				decode: 1.98, other: 0.01, prompt: 500 + k%9*300, gen: 100, cached: -1, model: testModel,
			}
		}
		out[b] = batchOf(calls...)
	}
	return out
}

func feedBenchState(b *testing.B, in consumer.Metrics) {
	for sec := -60.0; sec <= 200; sec += 10 {
		for r := 0; r < 8; r++ {
			v := steady(sec)
			queueGrowing(sec, v)
			require.NoError(b, in.ConsumeMetrics(context.Background(), fleetstatetest.Engine(fmt.Sprintf("r%d", r), testModel, sec, v)))
		}
	}
}

// BenchmarkSpans compares llm_root_cause (spans explained and phase metrics, with state joined) with the
// stock span_metrics connector (RED metrics) on the same spans, in one run. Each batch is copied before it
// is sent, for both, since llm_root_cause writes onto the spans it gets.
func BenchmarkSpans(b *testing.B) {
	batches := benchBatches(64)
	spansPer := batches[0].SpanCount()
	run := func(b *testing.B, in consumer.Traces) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			td := ptrace.NewTraces()
			batches[i%len(batches)].CopyTo(td)
			if err := in.ConsumeTraces(context.Background(), td); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*spansPer)/b.Elapsed().Seconds(), "spans/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spansPer), "ns/span")
	}
	b.Run("llm_root_cause", func(b *testing.B) {
		cfg := createDefaultConfig()
		cfg.MaxWait = 0
		cfg.SLO.Models = map[string]Limits{testModel: {TTFT: 1e9, TPOT: 5e7, E2E: 1e10}}
		set := connectortest.NewNopSettings(metadata.Type)
		f := NewFactory()
		tt, err := f.CreateTracesToTraces(context.Background(), set, cfg, consumertest.NewNop())
		require.NoError(b, err)
		tm, err := f.CreateTracesToMetrics(context.Background(), set, cfg, consumertest.NewNop())
		require.NoError(b, err)
		mm, err := f.CreateMetricsToMetrics(context.Background(), set, cfg, consumertest.NewNop())
		require.NoError(b, err)
		for _, c := range []interface {
			Start(context.Context, component.Host) error
		}{tt, tm, mm} {
			require.NoError(b, c.Start(context.Background(), componenttest.NewNopHost()))
		}
		b.Cleanup(func() {
			for _, c := range []interface{ Shutdown(context.Context) error }{tt, tm, mm} {
				_ = c.Shutdown(context.Background())
			}
		})
		feedBenchState(b, mm)
		run(b, tt)
	})
	b.Run("span_metrics", func(b *testing.B) {
		f := spanmetricsconnector.NewFactory()
		set := connectortest.NewNopSettings(f.Type())
		tm, err := f.CreateTracesToMetrics(context.Background(), set, f.CreateDefaultConfig(), consumertest.NewNop())
		require.NoError(b, err)
		require.NoError(b, tm.Start(context.Background(), componenttest.NewNopHost()))
		b.Cleanup(func() { _ = tm.Shutdown(context.Background()) })
		run(b, tm)
	})
}

// BenchmarkBoundedState sends a million distinct requests from 100,000 tenants (each with its gateway span,
// so the request-id cache fills too) and reports the live heap afterwards: every structure is capped, so the
// heap stays flat however many ids pass.
func BenchmarkBoundedState(b *testing.B) {
	const requests, tenants, perBatch = 1_000_000, 100_000, 500
	cfg := createDefaultConfig()
	cfg.MaxWait = 0
	cfg.SLO.Models = map[string]Limits{testModel: {TTFT: 1e9, TPOT: 5e7, E2E: 1e10}}
	set := connectortest.NewNopSettings(metadata.Type)
	f := NewFactory()
	for i := 0; i < b.N; i++ {
		tt, err := f.CreateTracesToTraces(context.Background(), set, cfg, consumertest.NewNop())
		require.NoError(b, err)
		tm, err := f.CreateTracesToMetrics(context.Background(), set, cfg, consumertest.NewNop())
		require.NoError(b, err)
		require.NoError(b, tt.Start(context.Background(), componenttest.NewNopHost()))
		require.NoError(b, tm.Start(context.Background(), componenttest.NewNopHost()))
		heapAt := func() float64 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return float64(ms.HeapAlloc) / (1 << 20)
		}
		var atTenth float64
		calls := make([]call, perBatch)
		for k := 0; k < requests; k += perBatch {
			for j := range calls {
				n := k + j
				calls[j] = call{
					replica: fmt.Sprintf("r%d", n%64), tenant: fmt.Sprintf("tenant-%d", n%tenants), id: fmt.Sprintf("req-%d", n),
					start: float64(n) / 1000, queue: 0.01, prefill: 0.1, decode: 1.98, other: 0.01, prompt: 500, gen: 100, cached: n % 500, model: fmt.Sprintf("model-%d", n%300),
				}
			}
			require.NoError(b, tt.ConsumeTraces(context.Background(), batchOf(calls...)))
			if k+perBatch == requests/10 {
				atTenth = heapAt()
			}
		}
		b.ReportMetric(atTenth, "heap-MiB@100k")
		b.ReportMetric(heapAt(), "heap-MiB@1M")
		_ = tt.Shutdown(context.Background())
		_ = tm.Shutdown(context.Background())
	}
}
