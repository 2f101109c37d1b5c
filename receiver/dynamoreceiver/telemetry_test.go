package dynamoreceiver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/dynamoreceiver/internal/metadata"
	"github.com/servescope/servescope/receiver/dynamoreceiver/internal/metadatatest"
)

// A failed scrape is counted in the receiver's own telemetry, as its metadata.yaml declares it, with the
// receiver's ID, the engine and the replica; what the receiver emits carries its own scope name.
func TestSelfTelemetryAndScope(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(tel)
	cfg := NewFactory().CreateDefaultConfig().(*enginescrape.Config)
	instance, md := enginescrapetest.ScrapeUnreachable(t, set, cfg, engine)
	metadatatest.AssertEqualEngineScrapeFailures(t, tel, []metricdata.DataPoint[int64]{{Value: 1, Attributes: attribute.NewSet(
		attribute.String("receiver", set.ID.String()),
		attribute.String(schema.AttrLLMEngineName, schema.EngineDynamo),
		attribute.String(schema.AttrServiceInstanceID, instance))}},
		metricdatatest.IgnoreTimestamp())
	require.Equal(t, metadata.ScopeName, md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().Name())
}
