// Package llmrootcauseconnector joins request spans with the replica state around them (scheduler, KV cache,
// prefix cache, GPUs) and explains every slow request: a latency breakdown, a root cause from a documented
// taxonomy, the numbers behind it, and per-phase metrics.
package llmrootcauseconnector

import (
	"context"
	"errors"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadata"
	"github.com/servescope/servescope/internal/sharedcore"
)

// NewFactory creates the llm_root_cause connector factory. Spans in: enriched spans, phase metrics and
// slow-request logs out. Metrics in: the replica state the explanations read; nothing comes out of them.
func NewFactory() connector.Factory {
	return connector.NewFactory(metadata.Type, func() component.Config { return createDefaultConfig() },
		connector.WithTracesToTraces(createTracesToTraces, metadata.TracesToTracesStability),
		connector.WithTracesToMetrics(createTracesToMetrics, metadata.TracesToMetricsStability),
		connector.WithTracesToLogs(createTracesToLogs, metadata.TracesToLogsStability),
		connector.WithMetricsToTraces(createMetricsToTraces, metadata.MetricsToTracesStability),
		connector.WithMetricsToMetrics(createMetricsToMetrics, metadata.MetricsToMetricsStability),
		connector.WithMetricsToLogs(createMetricsToLogs, metadata.MetricsToLogsStability),
	)
}

// cores holds one core per configuration while any of its instances runs.
var cores = sharedcore.NewMap[*core]()

// Output ranks: the traces-to-traces instance does the work when it exists, since only it may change spans.
const (
	rankTraces = iota
	rankMetrics
	rankLogs
)

type tracesInput struct {
	shared *sharedcore.Instance[*core]
	core   *core
	rank   int
}

func newTracesInput(set connector.Settings, cfg component.Config, rank int, register func(*core)) (*tracesInput, error) {
	shared, err := cores.LoadOrCreate(cfg, func() (*core, error) { return newCore(cfg.(*Config), set.TelemetrySettings) })
	if err != nil {
		return nil, err
	}
	c := shared.Core()
	c.mu.Lock()
	register(c)
	in := &tracesInput{shared: shared, core: c, rank: rank}
	c.tracesInputs = append(c.tracesInputs, in)
	c.mu.Unlock()
	return in, nil
}

func (in *tracesInput) Start(ctx context.Context, host component.Host) error {
	return in.shared.Start(ctx, host)
}

// Shutdown: the first started traces input to stop sends everything held (core.drain says why), then the
// instance is counted out.
func (in *tracesInput) Shutdown(ctx context.Context) error {
	var err error
	if in.shared.Started() {
		err = in.core.drain(ctx)
	}
	return errors.Join(err, in.shared.Shutdown(ctx))
}

// Capabilities: only the instance that writes onto spans needs its own copy of them.
func (in *tracesInput) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: in.rank == rankTraces}
}

func (in *tracesInput) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	return in.core.consumeTraces(ctx, td, in)
}

type metricsInput struct {
	shared *sharedcore.Instance[*core]
	core   *core
}

func newMetricsInput(set connector.Settings, cfg component.Config) (*metricsInput, error) {
	shared, err := cores.LoadOrCreate(cfg, func() (*core, error) { return newCore(cfg.(*Config), set.TelemetrySettings) })
	if err != nil {
		return nil, err
	}
	in := &metricsInput{shared: shared, core: shared.Core()}
	in.core.mu.Lock()
	in.core.metricsInputs = append(in.core.metricsInputs, in)
	in.core.mu.Unlock()
	return in, nil
}

func (in *metricsInput) Start(ctx context.Context, host component.Host) error {
	return in.shared.Start(ctx, host)
}

func (in *metricsInput) Shutdown(ctx context.Context) error { return in.shared.Shutdown(ctx) }

func (in *metricsInput) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (in *metricsInput) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	return in.core.consumeMetrics(ctx, md, in)
}

func createTracesToTraces(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Traces) (connector.Traces, error) {
	return newTracesInput(set, cfg, rankTraces, func(c *core) { c.tracesOut = next })
}

func createTracesToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Traces, error) {
	return newTracesInput(set, cfg, rankMetrics, func(c *core) { c.metricsOut = next })
}

func createTracesToLogs(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Logs) (connector.Traces, error) {
	return newTracesInput(set, cfg, rankLogs, func(c *core) { c.logsOut = next })
}

// The metrics input's instances exist for every output pipeline the connector feeds; they only feed state.
func createMetricsToTraces(_ context.Context, set connector.Settings, cfg component.Config, _ consumer.Traces) (connector.Metrics, error) {
	return newMetricsInput(set, cfg)
}

func createMetricsToMetrics(_ context.Context, set connector.Settings, cfg component.Config, _ consumer.Metrics) (connector.Metrics, error) {
	return newMetricsInput(set, cfg)
}

func createMetricsToLogs(_ context.Context, set connector.Settings, cfg component.Config, _ consumer.Logs) (connector.Metrics, error) {
	return newMetricsInput(set, cfg)
}
