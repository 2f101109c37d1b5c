package rayservereceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape, whole, of a Ray node's metrics endpoint and the dashboard's Serve API: the
// responses written from Ray's documentation (testdata/README.md), and the real Ray Serve LLM capture, whose
// node re-exports vLLM's families (no dashboard there). Rewrite with -update.
func TestGoldenScrapes(t *testing.T) {
	for _, c := range []struct {
		name      string
		metrics   func(t *testing.T) []byte
		dashboard string // the Serve API's answer, under testdata/; "" for no dashboard
	}{
		{"ray_serve_2.4x", func(t *testing.T) []byte { return testdata(t, "metrics_ray_serve_2.4x.txt") }, "serve_applications.json"},
		{"datadog_ray_vllm", func(t *testing.T) []byte { return fixtures.Read(t, "vllm/datadog_ray_vllm_metrics.txt") }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := enginescrapetest.NewServer(t, map[string]route{"/metrics": {Body: c.metrics(t)}})
			f := NewFactory()
			cfg := f.CreateDefaultConfig().(*Config)
			cfg.DashboardEndpoint = ""
			if c.dashboard != "" {
				dash := enginescrapetest.NewServer(t, map[string]route{"/api/serve/applications/": {Body: testdata(t, c.dashboard)}})
				cfg.DashboardEndpoint = dash.URL
			}
			md := enginescrapetest.FirstScrape(t, f, cfg, &cfg.Config, srv)
			golden.Metrics(t, enginescrapetest.GoldenFile(c.name), md)
		})
	}
}
