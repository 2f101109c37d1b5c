package rayservereceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/rayservereceiver/internal/metadata"
	"github.com/servescope/servescope/receiver/rayservereceiver/internal/metadatatest"
)

// A failed scrape is counted in the receiver's own telemetry, as its metadata.yaml declares it, with the
// receiver's ID, the engine and the replica; what the receiver emits carries its own scope name.
func TestSelfTelemetryAndScope(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	enginescrapetest.AssertSelfTelemetryAndScope(t, enginescrapetest.SelfTelemetry{
		NewSettings: metadatatest.NewSettings, AssertScrapeFailures: metadatatest.AssertEqualEngineScrapeFailures,
		Config: &cfg.Config, Engine: engineFor(cfg), EngineName: schema.EngineRayServe, ScopeName: metadata.ScopeName,
	})
}
