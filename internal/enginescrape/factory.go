package enginescrape

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
)

// NewReceiverFactory is an engine receiver's whole factory: its type, the engine's usual endpoint, and what
// is peculiar about the engine. Every engine receiver shares the Config of this package.
func NewReceiverFactory(typ component.Type, defaultEndpoint string, engine Engine) receiver.Factory {
	return NewReceiverFactoryWithPath(typ, defaultEndpoint, "/metrics", engine)
}

// NewReceiverFactoryWithPath is NewReceiverFactory for an engine whose Prometheus endpoint is not /metrics.
// An engine with a span source also gets a traces signal; in both pipelines, the receiver runs one scraper
// per signal, each with its own HTTP client.
func NewReceiverFactoryWithPath(typ component.Type, defaultEndpoint, metricsPath string, engine Engine) receiver.Factory {
	options := []receiver.FactoryOption{
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			return NewMetricsReceiver(set, cfg.(*Config), engine, next)
		}, component.StabilityLevelAlpha),
	}
	if engine.Spans != nil {
		options = append(options, receiver.WithTraces(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
			return NewTracesReceiver(set, cfg.(*Config), engine, next)
		}, component.StabilityLevelAlpha))
	}
	return receiver.NewFactory(typ,
		func() component.Config {
			cfg := NewDefaultConfig(defaultEndpoint, metricsPath)
			return &cfg
		},
		options...)
}
