// Package llmsignalsconnector turns the fleet's canonical state into operator signals: detectors that open
// and close incidents (OTel log records with evidence and recommended actions), replica health and routing
// scores, the desired replica count per model pool, and GPU cost attributed to tenants and models.
package llmsignalsconnector

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadata"
)

// NewFactory creates the llm_signals connector factory: metrics in; signal metrics and incident logs out.
func NewFactory() connector.Factory {
	return connector.NewFactory(metadata.Type, func() component.Config { return createDefaultConfig() },
		connector.WithMetricsToMetrics(createMetricsToMetrics, metadata.MetricsToMetricsStability),
		connector.WithMetricsToLogs(createMetricsToLogs, metadata.MetricsToLogsStability))
}

var cores = struct {
	sync.Mutex
	m map[component.ID]*core
}{m: map[component.ID]*core{}}

type input struct {
	id      component.ID
	core    *core
	started bool // guarded by core.mu
}

func newInput(set connector.Settings, cfg component.Config, register func(*core)) (*input, error) {
	cores.Lock()
	defer cores.Unlock()
	c, ok := cores.m[set.ID]
	if !ok {
		var err error
		if c, err = newCore(cfg.(*Config), set.TelemetrySettings); err != nil {
			return nil, err
		}
		cores.m[set.ID] = c
	}
	in := &input{id: set.ID, core: c}
	c.mu.Lock()
	register(c)
	c.inputs = append(c.inputs, in)
	c.mu.Unlock()
	return in, nil
}

func (in *input) Start(context.Context, component.Host) error {
	in.core.startOnce(&in.started)
	return nil
}

func (in *input) Shutdown(context.Context) error {
	in.core.shutdown(&in.started)
	cores.Lock()
	defer cores.Unlock()
	in.core.mu.Lock()
	unused := in.core.refs == 0
	in.core.mu.Unlock()
	if unused && cores.m[in.id] == in.core {
		delete(cores.m, in.id)
	}
	return nil
}

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
