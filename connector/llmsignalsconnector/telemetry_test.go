package llmsignalsconnector

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadatatest"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
)

type points = []metricdata.DataPoint[int64]

// One replica's state every 10 s for 100 s: every batch reaches the state once (the second instance's
// copies are not counted), and every evaluation the data triggered is counted, one per signal batch sent.
func TestSelfTelemetry(t *testing.T) {
	r := newRig(t)
	feeds := 0
	for sec := 0.0; sec <= 100; sec += 10 {
		r.feed(fleetstatetest.Engine("r1", model, sec, steady(sec)))
		feeds++
	}
	evaluations := int64(len(r.metrics.AllMetrics()))
	require.Positive(t, evaluations)
	metadatatest.AssertEqualLlmSignalsBatches(t, r.tel, points{{Value: int64(feeds)}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualLlmSignalsEvaluations(t, r.tel, points{{
		Value:      evaluations,
		Attributes: attribute.NewSet(attribute.String("trigger", "data")),
	}}, metricdatatest.IgnoreTimestamp())
}

// Signals the next consumer refuses are counted, one per evaluation.
func TestSelfTelemetryOfRefusedOutput(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	in, err := NewFactory().CreateMetricsToMetrics(context.Background(), metadatatest.NewSettings(tel), createDefaultConfig(),
		consumertest.NewErr(errors.New("refused")))
	require.NoError(t, err)
	require.NoError(t, in.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, in.Shutdown(context.Background())) })
	refused := 0
	for sec := 0.0; sec <= 100; sec += 10 {
		if in.ConsumeMetrics(context.Background(), fleetstatetest.Engine("r1", model, sec, steady(sec))) != nil {
			refused++
		}
	}
	require.Positive(t, refused)
	metadatatest.AssertEqualLlmSignalsOutputErrors(t, tel, points{{Value: int64(refused)}}, metricdatatest.IgnoreTimestamp())
}
