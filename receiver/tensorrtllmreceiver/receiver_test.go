package tensorrtllmreceiver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/tensorrtllmreceiver/internal/metadata"
)

type route = enginescrapetest.Route

var testdata = enginescrapetest.Testdata

func newServer(t *testing.T, metrics string) *enginescrapetest.Server {
	return enginescrapetest.NewServer(t, map[string]route{
		"/prometheus/metrics": {Body: testdata(t, metrics)},
		"/metrics":            {Body: testdata(t, "iteration_stats_2026.json")}, // the JSON iteration stats
		"/version":            {Body: []byte(`{"version":"1.2.0"}`)},
		"/health":             {},
	})
}

func newRig(t *testing.T, endpoint string) *enginescrapetest.Rig {
	return enginescrapetest.NewRig(t, metadata.Type, NewFactory().CreateDefaultConfig().(*enginescrape.Config), engine, endpoint)
}

func TestScrapesPrometheusEndpoint(t *testing.T) {
	for _, file := range []string{"prometheus_metrics_2026.txt", "prometheus_metrics_dynamo.txt", "prometheus_metrics_rc.txt"} {
		t.Run(file, func(t *testing.T) {
			r := newRig(t, newServer(t, file).URL)
			md := r.Scrape(t, 2)
			assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
			assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineReady))
			res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
			assert.Equal(t, "tensorrt_llm", res[schema.AttrLLMEngineName])
			assert.Equal(t, "1.2.0", res[schema.AttrLLMEngineVersion])
			assert.Zero(t, r.Warnings())
		})
	}
}

func TestWithoutPrometheusEndpoint(t *testing.T) {
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/prometheus/metrics", route{})
	r := newRig(t, srv.URL)
	assert.Equal(t, map[string]float64{"": 0}, enginescrapetest.Gauges(r.Scrape(t, 3), schema.MetricLLMEngineUp))
	warnings := r.Logs.FilterMessageSnippet("error status").All()
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0].ContextMap()["hint"], "1.1")
}

func TestReceiverLifecycle(t *testing.T) {
	enginescrapetest.CheckLifecycle(t, NewFactory(), newServer(t, "prometheus_metrics_2026.txt").URL)
}
