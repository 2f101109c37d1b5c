package mlcllmreceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/mlcllmreceiver/internal/metadata"
	"github.com/servescope/servescope/receiver/mlcllmreceiver/internal/metadatatest"
)

// A failed scrape is counted in the receiver's own telemetry, as its metadata.yaml declares it, with the
// receiver's ID, the engine and the replica; what the receiver emits carries its own scope name.
func TestSelfTelemetryAndScope(t *testing.T) {
	enginescrapetest.AssertSelfTelemetryAndScope(t, enginescrapetest.SelfTelemetry{
		NewSettings: metadatatest.NewSettings, AssertScrapeFailures: metadatatest.AssertEqualEngineScrapeFailures,
		Config: NewFactory().CreateDefaultConfig().(*enginescrape.Config), Engine: engine,
		EngineName: schema.EngineMlcLLM, ScopeName: metadata.ScopeName,
	})
}
