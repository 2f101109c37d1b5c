package enginescrapetest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
)

// SelfTelemetry is what an engine receiver's self-telemetry test takes from the receiver: its generated
// metadatatest functions and scope name (its metadata.yaml's), its configuration and engine, and the engine
// name its telemetry must carry.
type SelfTelemetry struct {
	// NewSettings is the receiver's metadatatest.NewSettings.
	NewSettings func(*componenttest.Telemetry) receiver.Settings
	// AssertScrapeFailures is the receiver's metadatatest.AssertEqualEngineScrapeFailures.
	AssertScrapeFailures func(*testing.T, *componenttest.Telemetry, []metricdata.DataPoint[int64], ...metricdatatest.Option)
	Config               *enginescrape.Config
	Engine               enginescrape.Engine
	EngineName           string // the llm.engine.name the failures are counted under, written out by the test
	ScopeName            string // the receiver's metadata.ScopeName
}

// AssertSelfTelemetryAndScope checks that a failed scrape is counted in the receiver's own telemetry, as its
// metadata.yaml declares it, with the receiver's ID, the engine and the replica, and that what the receiver
// emits carries its own scope name.
func AssertSelfTelemetryAndScope(t *testing.T, c SelfTelemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := c.NewSettings(tel)
	instance, md := ScrapeUnreachable(t, set, c.Config, c.Engine)
	c.AssertScrapeFailures(t, tel, []metricdata.DataPoint[int64]{{Value: 1, Attributes: attribute.NewSet(
		attribute.String("receiver", set.ID.String()),
		attribute.String(schema.AttrLLMEngineName, c.EngineName),
		attribute.String(schema.AttrServiceInstanceID, instance))}},
		metricdatatest.IgnoreTimestamp())
	require.Equal(t, c.ScopeName, md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().Name())
}
