package mlcllmreceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of the page, whole: every key it passes through, with its type, attributes,
// start times and values, the resource it stamps and llm.engine.up. Rewrite with -update.
func TestGoldenPage(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: enginescrapetest.Testdata(t, page)}})
	f := NewFactory()
	cfg := defaultConfig()
	md := enginescrapetest.FirstScrape(t, f, cfg, cfg, srv)
	golden.Metrics(t, enginescrapetest.GoldenFile("mlc_llm_v0.20.0"), md)
}
