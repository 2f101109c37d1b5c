// Package llmsignalsconnector turns the fleet's canonical state into operator signals: detectors that open
// and close incidents (OTel log records with evidence and recommended actions), replica health and routing
// scores, the desired replica count per model pool, and GPU cost attributed to tenants and models.
package llmsignalsconnector

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadata"
	"github.com/servescope/servescope/internal/sharedcore"
)

// NewFactory creates the llm_signals connector factory: metrics in; signal metrics and incident logs out.
func NewFactory() connector.Factory {
	return connector.NewFactory(metadata.Type, func() component.Config { return createDefaultConfig() },
		connector.WithMetricsToMetrics(createMetricsToMetrics, metadata.MetricsToMetricsStability),
		connector.WithMetricsToLogs(createMetricsToLogs, metadata.MetricsToLogsStability))
}

// cores holds one core per configuration while any of its instances runs.
var cores = sharedcore.NewMap[*core]()

type input struct {
	shared *sharedcore.Instance[*core]
	core   *core
}

func newInput(set connector.Settings, cfg component.Config, register func(*core)) (*input, error) {
	shared, err := cores.LoadOrCreate(cfg, func() (*core, error) { return newCore(cfg.(*Config), set.TelemetrySettings) })
	if err != nil {
		return nil, err
	}
	in := &input{shared: shared, core: shared.Core()}
	in.core.mu.Lock()
	register(in.core)
	in.core.inputs = append(in.core.inputs, in)
	in.core.mu.Unlock()
	return in, nil
}

func (in *input) Start(ctx context.Context, host component.Host) error {
	return in.shared.Start(ctx, host)
}

func (in *input) Shutdown(ctx context.Context) error { return in.shared.Shutdown(ctx) }

func (in *input) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (in *input) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	return in.core.consume(ctx, md, in)
}

func createMetricsToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Metrics, error) {
	return newInput(set, cfg, func(c *core) { c.metricsOut = next })
}

func createMetricsToLogs(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Logs) (connector.Metrics, error) {
	return newInput(set, cfg, func(c *core) { c.logsOut = next })
}
