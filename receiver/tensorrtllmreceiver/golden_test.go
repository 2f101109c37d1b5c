package tensorrtllmreceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of trtllm-serve's recorded responses (no real capture exists; see
// testdata/README.md): the Prometheus families, the JSON iteration stats and health, whole. Rewrite with
// -update.
func TestGoldenRecordedResponses(t *testing.T) {
	srv := newServer(t, "prometheus_metrics_2026.txt")
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	md := enginescrapetest.FirstScrape(t, f, cfg, cfg, srv)
	golden.Metrics(t, enginescrapetest.GoldenFile("trtllm_serve_2026"), md)
}
