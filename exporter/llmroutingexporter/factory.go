// Package llmroutingexporter serves what servescope knows about each replica where routers and autoscalers
// look: the model-server protocol an inference gateway's endpoint picker scrapes (for any engine, in vLLM's
// names), JSON replica scores and pool recommendations, and a KEDA metrics-api endpoint for scaling.
package llmroutingexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/servescope/servescope/exporter/llmroutingexporter/internal/metadata"
)

// NewFactory creates the llm_routing exporter factory.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(metadata.Type, func() component.Config { return createDefaultConfig() },
		exporter.WithMetrics(createMetrics, metadata.MetricsStability))
}

func createMetrics(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Metrics, error) {
	e, err := newRoutingExporter(cfg.(*Config), set)
	if err != nil {
		return nil, err
	}
	// No queue and no retries: the latest state is what matters, and it is kept in memory here.
	return exporterhelper.NewMetrics(ctx, set, cfg, e.consume,
		exporterhelper.WithStart(e.start), exporterhelper.WithShutdown(e.shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}))
}
