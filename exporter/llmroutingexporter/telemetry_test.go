package llmroutingexporter

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/servescope/servescope/exporter/llmroutingexporter/internal/metadatatest"
)

// Every applied batch is counted, and so is every model refused at max_pools (one per model and batch), in
// the exporter's own telemetry with its ID.
func TestSelfTelemetry(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(tel)
	cfg := createDefaultConfig()
	cfg.MaxPools = 2
	e, err := newRoutingExporter(cfg, set)
	require.NoError(t, err)
	e.now = func() time.Time { return now }
	for range 2 {
		require.NoError(t, e.consume(context.Background(), poolSignals(0, 5, time.Second)))
	}
	exporterID := attribute.NewSet(attribute.String("exporter", set.ID.String()))
	metadatatest.AssertEqualLlmRoutingBatches(t, tel, []metricdata.DataPoint[int64]{{Value: 2, Attributes: exporterID}},
		metricdatatest.IgnoreTimestamp())
	const refused = 2 * (5 - 2) // each batch: the three models past the first two
	metadatatest.AssertEqualLlmRoutingRefusedPools(t, tel, []metricdata.DataPoint[int64]{{Value: refused, Attributes: exporterID}},
		metricdatatest.IgnoreTimestamp())
}
