package lmdeployreceiver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/lmdeployreceiver/internal/metadata"
)

// page is LMDeploy 0.16.0's /metrics as its source writes it (see testdata/README.md): no real capture of
// an LMDeploy server is public.
const page = "metrics_v0.16.0.txt"

func defaultConfig() *enginescrape.Config {
	return NewFactory().CreateDefaultConfig().(*enginescrape.Config)
}

func TestScrapesThePage(t *testing.T) {
	body := enginescrapetest.Testdata(t, page)
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: body}})
	r := enginescrapetest.NewRig(t, metadata.Type, defaultConfig(), engine, srv.URL)
	md := r.Scrape(t, 2)
	assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
	assert.Equal(t, schema.EngineLmdeploy, md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
	assert.Zero(t, r.Warnings(), "the page parses cleanly")
	for _, family := range []string{"lmdeploy:num_requests_running", "lmdeploy:num_requests_waiting", "lmdeploy:gpu_cache_usage_perc"} {
		want := fixtures.Samples(body, family)
		require.Len(t, want, 1, family)
		assert.Equal(t, map[string]float64{"model_name=internlm/internlm2_5-7b-chat;engine=0;": want[0].Value},
			enginescrapetest.Gauges(md, family), family)
	}
	assert.Equal(t, fixtures.Sum(body, "lmdeploy:prompt_tokens_total"), sum(enginescrapetest.Sums(md, "lmdeploy:prompt_tokens_total")))
}

func sum(points map[string]float64) float64 {
	var total float64
	for _, v := range points {
		total += v
	}
	return total
}

func TestDefaultEndpointIsTheAPIServerPort(t *testing.T) {
	cfg := defaultConfig()
	assert.Equal(t, "http://localhost:23333", cfg.Endpoint)
	assert.Equal(t, "/metrics", cfg.MetricsPath)
}

// Without metrics enabled the api_server has no /metrics route: the warning says which flag to use.
func TestMetricsDisabledIsExplained(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Status: 404, Body: []byte(`{"detail":"Not Found"}`)}})
	r := enginescrapetest.NewRig(t, metadata.Type, defaultConfig(), engine, srv.URL)
	md := r.Scrape(t, 3)
	assert.Equal(t, map[string]float64{"": 0}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
	warnings := r.Logs.FilterMessageSnippet("error status").All()
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0].ContextMap()["hint"], "--enable-metrics")
}

func TestBadInput(t *testing.T) {
	enginescrapetest.CheckBadInput(t, enginescrapetest.BadInput{
		Type: metadata.Type, Engine: engine, Config: defaultConfig, Page: enginescrapetest.Testdata(t, page),
		MetricsPath: "/metrics", Gauge: "lmdeploy:num_requests_running",
	})
}

func TestReceiverLifecycle(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: enginescrapetest.Testdata(t, page)}})
	enginescrapetest.CheckLifecycle(t, NewFactory(), srv.URL)
}
