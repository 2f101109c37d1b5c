package llmrootcauseconnector

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadata"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/golden"
)

// A scenario under testdata/<case>/: config.yaml (the llm_root_cause section), input-metrics.yaml (the
// replicas' canonical state, one scrape per resource, fed in order) and input-traces.yaml (one batch of
// spans). The connector runs as a collector wires it (traces to traces, metrics and logs; metrics in) on a
// clock the test sets, and what it emits is compared whole with expected-traces.yaml,
// expected-metrics.yaml and expected-logs.yaml. Rewrite with -update.
func TestGoldenScenarios(t *testing.T) {
	for _, name := range []string{"queue_saturation", "sglang_tree_tp4"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			cfg := createDefaultConfig()
			cm, err := confmaptest.LoadConf(filepath.Join(dir, "config.yaml"))
			require.NoError(t, err)
			sub, err := cm.Sub(metadata.Type.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			require.NoError(t, cfg.Validate())

			ctx := context.Background()
			f := NewFactory()
			set := connectortest.NewNopSettings(metadata.Type)
			traces, metrics, logs := new(consumertest.TracesSink), new(consumertest.MetricsSink), new(consumertest.LogsSink)
			tt, err := f.CreateTracesToTraces(ctx, set, cfg, traces)
			require.NoError(t, err)
			tm, err := f.CreateTracesToMetrics(ctx, set, cfg, metrics)
			require.NoError(t, err)
			tl, err := f.CreateTracesToLogs(ctx, set, cfg, logs)
			require.NoError(t, err)
			mm, err := f.CreateMetricsToMetrics(ctx, set, cfg, consumertest.NewNop())
			require.NoError(t, err)

			// The connector's clock (metric start and flush times, log observation times, the decay of its
			// baselines) is the test's: the scenario's seconds, moved on by hand.
			var clock atomic.Int64
			setClock := func(sec float64) { clock.Store(fleetstatetest.At(sec)) }
			tt.(*tracesInput).core.now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }

			setClock(55)
			all := []component.Component{tt, tm, tl, mm}
			for _, c := range all {
				require.NoError(t, c.Start(ctx, componenttest.NewNopHost()))
			}
			state := golden.ReadMetrics(t, filepath.Join(dir, "input-metrics.yaml"))
			for i := 0; i < state.ResourceMetrics().Len(); i++ {
				scrape := pmetric.NewMetrics()
				state.ResourceMetrics().At(i).CopyTo(scrape.ResourceMetrics().AppendEmpty())
				require.NoError(t, mm.ConsumeMetrics(ctx, scrape))
			}
			setClock(110)
			spans := golden.ReadTraces(t, filepath.Join(dir, "input-traces.yaml"))
			for _, in := range []interface {
				ConsumeTraces(context.Context, ptrace.Traces) error
			}{tt, tm, tl} { // the collector's fan-out: each traces instance gets its own copy
				batch := ptrace.NewTraces()
				spans.CopyTo(batch)
				require.NoError(t, in.ConsumeTraces(ctx, batch))
			}
			setClock(130)
			for _, c := range all {
				require.NoError(t, c.Shutdown(ctx))
			}

			t.Run("traces", func(t *testing.T) {
				golden.Traces(t, filepath.Join(dir, "expected-traces.yaml"), golden.JoinTraces(traces.AllTraces()))
			})
			t.Run("metrics", func(t *testing.T) {
				golden.Metrics(t, filepath.Join(dir, "expected-metrics.yaml"), golden.JoinMetrics(metrics.AllMetrics()))
			})
			t.Run("logs", func(t *testing.T) {
				golden.Logs(t, filepath.Join(dir, "expected-logs.yaml"), golden.JoinLogs(logs.AllLogs()))
			})
		})
	}
}
