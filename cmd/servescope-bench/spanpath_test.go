package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.yaml.in/yaml/v3"

	"github.com/servescope/servescope/connector/llmrootcauseconnector"
)

// BenchmarkSpanPath is the `-only spans` run in one process, less HTTP: the same request bodies, decoded as
// the OTLP receiver decodes them, into each connector configured as in that run's collector configuration.
// For llm_root_cause the batch is copied once first, as the collector's fanout copies it: the connector's
// traces and metrics outputs are two consumers of one pipeline, and one of them writes onto the spans.
// Through the binary one run's CPU seconds move by a fifth from run to run on a shared machine; these
// figures move by a few percent, so changes are compared here and confirmed through the binary.
//
// 2,000 distinct batches (100,000 requests) go round, so the request-id caches (65,536 entries) are full
// and forgetting their oldest, as in a collector that has run for a while, and an id comes round again
// only after it has been forgotten. They are sent once before the timer starts.
func BenchmarkSpanPath(b *testing.B) {
	const batches, requestsPerBatch = 2000, 50
	bodies := make([][]byte, batches)
	var n uint64
	for i := range bodies {
		bodies[i] = spanBatch(&n, requestsPerBatch)
	}
	decode := func(b *testing.B, body []byte) ptrace.Traces {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			b.Fatal(err)
		}
		return req.Traces()
	}
	run := func(b *testing.B, send func(ptrace.Traces) error) {
		for _, body := range bodies {
			require.NoError(b, send(decode(b, body)))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := send(decode(b, bodies[i%batches])); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*requestsPerBatch), "ns/request")
	}

	b.Run("llm_root_cause", func(b *testing.B) {
		f := llmrootcauseconnector.NewFactory()
		cfg := connectorConfig(b, spansOurs(), f)
		set := connectortest.NewNopSettings(f.Type())
		traces, err := f.CreateTracesToTraces(context.Background(), set, cfg, consumertest.NewNop())
		require.NoError(b, err)
		metrics, err := f.CreateTracesToMetrics(context.Background(), set, cfg, consumertest.NewNop())
		require.NoError(b, err)
		started(b, traces, metrics)
		require.True(b, traces.Capabilities().MutatesData, "the copy below stands for the fanout's: the traces output writes")
		run(b, func(td ptrace.Traces) error {
			clone := ptrace.NewTraces()
			td.CopyTo(clone)
			if err := traces.ConsumeTraces(context.Background(), clone); err != nil {
				return err
			}
			return metrics.ConsumeTraces(context.Background(), td)
		})
	})
	b.Run("span_metrics", func(b *testing.B) {
		f := spanmetricsconnector.NewFactory()
		cfg := connectorConfig(b, spansStock(), f)
		metrics, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()), cfg, consumertest.NewNop())
		require.NoError(b, err)
		started(b, metrics)
		run(b, func(td ptrace.Traces) error { return metrics.ConsumeTraces(context.Background(), td) })
	})
}

// The benchmark's connectors are those of the binary run: what the run's configuration sets reaches them.
func TestSpanPathConfiguresAsTheBinaryRun(t *testing.T) {
	ours, ok := connectorConfig(t, spansOurs(), llmrootcauseconnector.NewFactory()).(*llmrootcauseconnector.Config)
	require.True(t, ok)
	defaults, ok := llmrootcauseconnector.NewFactory().CreateDefaultConfig().(*llmrootcauseconnector.Config)
	require.True(t, ok)
	require.NotZero(t, defaults.MaxWait, "the run sets max_wait to 0, so the default must differ for this test to mean anything")
	require.Zero(t, ours.MaxWait)
	require.Equal(t, time.Second, ours.SLO.Default.TTFT)
	stock := spanmetricsconnector.NewFactory()
	require.Equal(t, stock.CreateDefaultConfig(), connectorConfig(t, spansStock(), stock))
}

// connectorConfig reads the factory's connector out of a collector configuration of this command, so that
// the benchmark configures it exactly as the binary run does.
func connectorConfig(tb testing.TB, c config, f connector.Factory) component.Config {
	var doc struct {
		Connectors map[string]map[string]any `yaml:"connectors"`
	}
	require.NoError(tb, yaml.Unmarshal([]byte(c("127.0.0.1:0")), &doc))
	raw, ok := doc.Connectors[f.Type().String()]
	require.True(tb, ok, "the configuration has no %s connector", f.Type())
	cfg := f.CreateDefaultConfig()
	require.NoError(tb, confmap.NewFromStringMap(raw).Unmarshal(cfg))
	return cfg
}

func started(b *testing.B, components ...interface {
	consumer.Traces
	component.Component
},
) {
	for _, c := range components {
		require.NoError(b, c.Start(context.Background(), componenttest.NewNopHost()))
		b.Cleanup(func() {
			if err := c.Shutdown(context.Background()); err != nil {
				b.Error(fmt.Errorf("shutting down: %w", err))
			}
		})
	}
}
