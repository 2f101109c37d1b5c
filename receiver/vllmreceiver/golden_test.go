package vllmreceiver

import (
	"testing"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/golden"
)

// The receiver's first scrape of each real capture, whole: every family it passes through, with its type,
// unit, attributes, start times and values, the resource it stamps and llm.engine.up. Rewrite with -update.
func TestGoldenCaptures(t *testing.T) {
	for _, c := range []struct {
		name, capture string
		version       string // what /version answers; "" when the endpoint does not exist (a Ray node)
	}{
		{"datadog_vllm_v0", "vllm/datadog_vllm_metrics.txt", `{"version":"0.4.3"}`},
		{"stormlog_vllm_v1", "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt", `{"version":"0.30.0"}`},
		{"datadog_ray_vllm", "vllm/datadog_ray_vllm_metrics.txt", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			routes := map[string]enginescrapetest.Route{"/metrics": {Body: fixtures.Read(t, c.capture)}}
			if c.version != "" {
				routes[versionPath] = enginescrapetest.Route{Body: []byte(c.version)}
			}
			srv := enginescrapetest.NewServer(t, routes)
			f := NewFactory()
			cfg := f.CreateDefaultConfig().(*enginescrape.Config)
			md := enginescrapetest.FirstScrape(t, f, cfg, cfg, srv)
			golden.Metrics(t, enginescrapetest.GoldenFile(c.name), md)
		})
	}
}
