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
func NewReceiverFactoryWithPath(typ component.Type, defaultEndpoint, metricsPath string, engine Engine) receiver.Factory {
	return receiver.NewFactory(typ,
		func() component.Config {
			cfg := NewDefaultConfig(defaultEndpoint, metricsPath)
			return &cfg
		},
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			return NewMetricsReceiver(set, cfg.(*Config), engine, next)
		}, component.StabilityLevelAlpha))
}
