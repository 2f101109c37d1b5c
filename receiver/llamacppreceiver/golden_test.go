package llamacppreceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of the real llama.cpp capture with the recorded /slots, /props and /health
// answers, whole. Rewrite with -update.
func TestGoldenCapture(t *testing.T) {
	srv := newServer(t)
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	md := enginescrapetest.FirstScrape(t, f, cfg, cfg, srv)
	golden.Metrics(t, enginescrapetest.GoldenFile("ik_llama_cpp_pr695"), md)
}
