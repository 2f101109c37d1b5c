package nimreceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of the real NIM capture, whole: every family it passes through, with its
// type, unit, attributes, start times and values, the resource it stamps (with /v1/version's release) and
// llm.engine.up. Rewrite with -update.
func TestGoldenCapture(t *testing.T) {
	f := NewFactory()
	cfg := defaultConfig()
	md := enginescrapetest.FirstScrape(t, f, cfg, cfg, nimServer(t))
	golden.Metrics(t, enginescrapetest.GoldenFile("datadog_nvidia_nim"), md)
}
