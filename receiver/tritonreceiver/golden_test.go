package tritonreceiver

import (
	"path"
	"strings"
	"testing"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of every Triton capture (a real server's, and the TensorRT-LLM backend's
// documented examples), whole. Rewrite with -update.
func TestGoldenCaptures(t *testing.T) {
	for _, rel := range fixtures.Glob(t, "triton_trtllm/*.txt") {
		name := strings.TrimSuffix(path.Base(rel), ".txt")
		t.Run(name, func(t *testing.T) {
			srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: fixtures.Read(t, rel)}})
			f := NewFactory()
			cfg := f.CreateDefaultConfig().(*enginescrape.Config)
			md := enginescrapetest.FirstScrape(t, f, cfg, cfg, srv)
			golden.Metrics(t, enginescrapetest.GoldenFile(name), md)
		})
	}
}
