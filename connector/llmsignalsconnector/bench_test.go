package llmsignalsconnector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadata"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
)

// BenchmarkInterval is one evaluation interval of a fleet: every replica's engine scrape and GPU scrape go in
// (one batch, as a gateway's metrics pipeline delivers them), and one evaluation of every detector and
// signal comes out. The state window is full (15 min at 10 s) before timing starts.
func BenchmarkInterval(b *testing.B) {
	for _, replicas := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			cfg := createDefaultConfig()
			cfg.Interval, cfg.Stale = 10*time.Second, 30*time.Second
			f := NewFactory()
			set := connectortest.NewNopSettings(metadata.Type)
			mm, err := f.CreateMetricsToMetrics(context.Background(), set, cfg, consumertest.NewNop())
			require.NoError(b, err)
			ml, err := f.CreateMetricsToLogs(context.Background(), set, cfg, consumertest.NewNop())
			require.NoError(b, err)
			require.NoError(b, mm.Start(context.Background(), componenttest.NewNopHost()))
			require.NoError(b, ml.Start(context.Background(), componenttest.NewNopHost()))
			b.Cleanup(func() { _ = mm.Shutdown(context.Background()); _ = ml.Shutdown(context.Background()) })
			round := func(sec float64) pmetric.Metrics {
				md := pmetric.NewMetrics()
				for r := 0; r < replicas; r++ {
					rep := fmt.Sprintf("replica-%04d", r)
					fleetstatetest.Engine(rep, fmt.Sprintf("model-%d", r%5), sec, steady(sec)).ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
					fleetstatetest.GPUWith(sec, fleetstatetest.GPUState{ID: "GPU-" + rep, Owner: rep, Utilization: 0.8, MemoryUtilization: 0.9}).
						ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
				}
				return md
			}
			sec := -900.0
			for ; sec < 0; sec += 10 {
				require.NoError(b, mm.ConsumeMetrics(context.Background(), round(sec)))
			}
			batches := make([]pmetric.Metrics, b.N)
			for i := range batches {
				batches[i] = round(sec + float64(i)*10)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := mm.ConsumeMetrics(context.Background(), batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*replicas), "ns/replica")
		})
	}
}
