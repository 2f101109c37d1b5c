package dynamoreceiver

import (
	"strings"
	"testing"

	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of each page, whole: every family it passes through, with its type, unit,
// attributes, start times and values, the resource it stamps (tier, and the backend on a worker's page)
// and llm.engine.up. Rewrite with -update.
func TestGoldenPages(t *testing.T) {
	for _, page := range []string{frontendPage, vllmWorkerPage, sglangWorkerPage} {
		name := strings.TrimSuffix(page, ".txt")
		t.Run(name, func(t *testing.T) {
			srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: enginescrapetest.Testdata(t, page)}})
			f := NewFactory()
			cfg := defaultConfig()
			md := enginescrapetest.FirstScrape(t, f, cfg, cfg, srv)
			golden.Metrics(t, enginescrapetest.GoldenFile(name), md)
		})
	}
}
