package llmnormalizeprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/servescope/servescope/processor/llmnormalizeprocessor/internal/metadatatest"
)

// Every data point is counted once by what became of it, in the processor's own telemetry.
func TestSelfTelemetry(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg    *Config
		second string // the outcome of the two unmapped points
	}{
		"passthrough":   {&Config{}, "passthrough"},
		"drop_unmapped": {&Config{DropUnmapped: true}, "dropped"},
	} {
		t.Run(name, func(t *testing.T) {
			tel := componenttest.NewTelemetry()
			t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
			p, err := NewFactory().CreateMetrics(context.Background(), metadatatest.NewSettings(tel), tc.cfg, new(consumertest.MetricsSink))
			require.NoError(t, err)
			require.NoError(t, p.ConsumeMetrics(context.Background(),
				gaugeMetrics("vllm:num_requests_running", "python_gc_objects_collected_total", "some_other_metric")))
			outcome := func(v string) attribute.Set { return attribute.NewSet(attribute.String("outcome", v)) }
			metadatatest.AssertEqualLlmNormalizeDatapoints(t, tel, []metricdata.DataPoint[int64]{
				{Value: 1, Attributes: outcome("mapped")}, {Value: 2, Attributes: outcome(tc.second)},
			}, metricdatatest.IgnoreTimestamp())
		})
	}
}
