package sglangreceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of the real SGLang capture with the recorded server_info, loads and health
// answers, whole. Rewrite with -update.
func TestGoldenCapture(t *testing.T) {
	srv := newServer(t, currentServer(t))
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	md := enginescrapetest.FirstScrape(t, f, cfg, cfg, srv)
	golden.Metrics(t, enginescrapetest.GoldenFile("datadog_sglang"), md)
}
