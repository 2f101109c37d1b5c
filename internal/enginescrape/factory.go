package enginescrape

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/metric"
)

// Metadata is what an engine receiver's metadata.yaml says about it, read from the receiver's generated
// metadata package: the shared code has no metadata of its own.
type Metadata struct {
	Type component.Type
	// ScopeName is the instrumentation scope of what the receiver emits: its package path.
	ScopeName        string
	MetricsStability component.StabilityLevel
	// TracesStability is the traces signal's, for an engine with a span source.
	TracesStability component.StabilityLevel
	// Telemetry builds the receiver's self-telemetry instruments with its generated telemetry builder.
	Telemetry func(component.TelemetrySettings) (Telemetry, error)
}

// Telemetry is the self-telemetry every engine receiver declares in its metadata.yaml: the same four
// counters in each (otelcol_engine_*), under the receiver's own instrumentation scope.
type Telemetry struct {
	ScrapeFailures, RejectedLines, DroppedPoints, CounterResets metric.Int64Counter
}

// TelemetryFrom is a Metadata.Telemetry built with a receiver's generated telemetry builder: newBuilder is
// its metadata.NewTelemetryBuilder, instruments picks the four counters out of what it built. The builders
// are a distinct generated type per receiver, so picking the fields is the receiver's one line of it.
func TelemetryFrom[Builder, Option any](
	newBuilder func(component.TelemetrySettings, ...Option) (*Builder, error), instruments func(*Builder) Telemetry,
) func(component.TelemetrySettings) (Telemetry, error) {
	return func(set component.TelemetrySettings) (Telemetry, error) {
		tb, err := newBuilder(set)
		if err != nil {
			return Telemetry{}, err
		}
		return instruments(tb), nil
	}
}

// NewReceiverFactory is an engine receiver's whole factory: the engine's usual endpoint, and what is peculiar
// about the engine and its receiver. Every engine receiver shares the Config of this package.
func NewReceiverFactory(defaultEndpoint string, engine Engine) receiver.Factory {
	return NewReceiverFactoryWithPath(defaultEndpoint, "/metrics", engine)
}

// NewReceiverFactoryWithPath is NewReceiverFactory for an engine whose Prometheus endpoint is not /metrics.
// An engine with a span source also gets a traces signal; in both pipelines, the receiver runs one scraper
// per signal, each with its own HTTP client.
func NewReceiverFactoryWithPath(defaultEndpoint, metricsPath string, engine Engine) receiver.Factory {
	options := []receiver.FactoryOption{
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			return NewMetricsReceiver(set, cfg.(*Config), engine, next)
		}, engine.Receiver.MetricsStability),
	}
	if engine.Spans != nil {
		options = append(options, receiver.WithTraces(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
			return NewTracesReceiver(set, cfg.(*Config), engine, next)
		}, engine.Receiver.TracesStability))
	}
	return receiver.NewFactory(engine.Receiver.Type,
		func() component.Config {
			cfg := NewDefaultConfig(defaultEndpoint, metricsPath)
			return &cfg
		},
		options...)
}
