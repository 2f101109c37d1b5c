package llmsignalsconnector

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadata"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/golden"
)

// A scenario under testdata/<case>/: config.yaml (the llm_signals section) and input-metrics.yaml (the
// replicas' canonical state, one scrape per resource, fed in order to both instances, as the collector's
// fan-out does). Everything the connector emits is compared whole with expected-metrics.yaml and
// expected-logs.yaml. Evaluations run on the data's clock, so their times are the input's; the one
// wall-clock time in the metrics, the start of the cumulative cost series (the connector's start), is
// replaced by the scenario's epoch, and a log record's observed time (when the connector wrote it) is checked
// to be the wall clock's during the run and then cleared. Rewrite with -update.
func TestGoldenScenarios(t *testing.T) {
	for _, name := range []string{"kv_thrash"} {
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
			metrics, logs := new(consumertest.MetricsSink), new(consumertest.LogsSink)
			mm, err := f.CreateMetricsToMetrics(ctx, set, cfg, metrics)
			require.NoError(t, err)
			ml, err := f.CreateMetricsToLogs(ctx, set, cfg, logs)
			require.NoError(t, err)
			ins := []interface {
				component.Component
				ConsumeMetrics(context.Context, pmetric.Metrics) error
			}{mm, ml}
			for _, in := range ins {
				require.NoError(t, in.Start(ctx, componenttest.NewNopHost()))
			}
			started := mm.(*input).core.start

			state := golden.ReadMetrics(t, filepath.Join(dir, "input-metrics.yaml"))
			before := time.Now()
			for i := 0; i < state.ResourceMetrics().Len(); i++ {
				for _, in := range ins {
					scrape := pmetric.NewMetrics()
					state.ResourceMetrics().At(i).CopyTo(scrape.ResourceMetrics().AppendEmpty())
					require.NoError(t, in.ConsumeMetrics(ctx, scrape))
				}
			}
			for _, in := range ins {
				require.NoError(t, in.Shutdown(ctx))
			}
			after := time.Now()

			t.Run("metrics", func(t *testing.T) {
				md := golden.JoinMetrics(metrics.AllMetrics())
				golden.FixClock(md, started, pcommon.Timestamp(fleetstatetest.At(0)))
				golden.Metrics(t, filepath.Join(dir, "expected-metrics.yaml"), md)
			})
			t.Run("logs", func(t *testing.T) {
				ld := golden.JoinLogs(logs.AllLogs())
				for i := 0; i < ld.ResourceLogs().Len(); i++ {
					sls := ld.ResourceLogs().At(i).ScopeLogs()
					for j := 0; j < sls.Len(); j++ {
						recs := sls.At(j).LogRecords()
						for k := 0; k < recs.Len(); k++ {
							observed := recs.At(k).ObservedTimestamp().AsTime()
							require.False(t, observed.Before(before) || observed.After(after),
								"observed at %s, outside the run (%s to %s)", observed, before, after)
							recs.At(k).SetObservedTimestamp(0)
						}
					}
				}
				golden.Logs(t, filepath.Join(dir, "expected-logs.yaml"), ld)
			})
		})
	}
}
