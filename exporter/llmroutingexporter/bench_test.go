package llmroutingexporter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/exporter/llmroutingexporter/internal/metadata"
	"github.com/servescope/servescope/internal/schema"
)

// poolSignals is what llm_signals says about n models' pools in one interval (desired and current replicas).
func poolSignals(first, n int, ago time.Duration) pmetric.Metrics {
	b := newBatch()
	for i := first; i < first+n; i++ {
		name := fmt.Sprintf("model-%d", i)
		b.signal(schema.MetricLLMPoolDesiredReplicas, 2, ago, schema.AttrGenAIRequestModel, name)
		b.signal(schema.MetricLLMPoolReplicas, 2, ago, schema.AttrGenAIRequestModel, name)
	}
	return b.md
}

// One ordinary batch (three replicas' engine gauges and one pool's scaling signal) arriving while the
// exporter already holds 10, 10k or 300k pools: its cost should not grow with the pools that it does not touch.
func BenchmarkConsumeOneBatch(b *testing.B) {
	for _, pools := range []int{10, 10_000, 300_000} {
		b.Run(fmt.Sprintf("pools=%d", pools), func(b *testing.B) {
			cfg := createDefaultConfig()
			cfg.MaxPools = pools // the cap is not what is measured here
			e, err := newRoutingExporter(cfg, exportertest.NewNopSettings(metadata.Type))
			require.NoError(b, err)
			e.now = func() time.Time { return now }
			require.NoError(b, e.consume(context.Background(), poolSignals(0, pools, time.Second)))
			require.Equal(b, pools, e.state.Load().pools.Len())

			batch := newBatch()
			for r := 0; r < 3; r++ {
				batch.engine(fmt.Sprintf("r%d", r), "vllm", "model-0", 0, map[string]float64{
					schema.MetricLLMSchedulerRequestsWaiting: 1,
					schema.MetricLLMSchedulerRequestsRunning: 4, schema.MetricLLMKVCacheUtilization: 0.5,
				})
			}
			batch.signal(schema.MetricLLMPoolDesiredReplicas, 3, 0, schema.AttrGenAIRequestModel, "model-0")
			batch.signal(schema.MetricLLMPoolReplicas, 3, 0, schema.AttrGenAIRequestModel, "model-0")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := e.consume(context.Background(), batch.md); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
