package mlcllmreceiver

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/mlcllmreceiver/internal/metadata"
)

// page is MLC LLM's /metrics as its source writes it (see testdata/README.md): no real capture of an MLC
// LLM server is public.
const page = "metrics_v0.20.0.txt"

func defaultConfig() *enginescrape.Config {
	return NewFactory().CreateDefaultConfig().(*enginescrape.Config)
}

// pageValue reads key's value from the page's text, the way the page is written: `key<TAB>value`.
func pageValue(t *testing.T, body []byte, key string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok && k == key {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	require.Failf(t, "key not on the page", "%s", key)
	return 0
}

func TestScrapesThePage(t *testing.T) {
	body := enginescrapetest.Testdata(t, page)
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: body}})
	r := enginescrapetest.NewRig(t, metadata.Type, defaultConfig(), engine, srv.URL)
	md := r.Scrape(t, 2)
	assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
	assert.Equal(t, schema.EngineMlcLLM, md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
	assert.Zero(t, r.Warnings(), "the page parses cleanly: %v", r.Logs.All())
	for _, key := range []string{"engine_prefill_time_sum", "engine_decode_time_sum", "prompt_tokens_sum", "completion_tokens_sum", "prefill_tokens_sum"} {
		assert.Equal(t, map[string]float64{"": pageValue(t, body, key)}, enginescrapetest.Sums(md, key), "%s is a running total", key)
	}
	for _, key := range []string{"prefill_tokens_per_s", "decode_tokens_per_s", "last_finished_request_ttft_s", "last_finished_request_inter_token_latency_s"} {
		assert.Equal(t, map[string]float64{"": pageValue(t, body, key)}, enginescrapetest.Gauges(md, key), key)
	}
	steps := enginescrapetest.Gauges(md, "decode_time_by_batch_size_mean")
	assert.Len(t, steps, 8)
	assert.Equal(t, pageValue(t, body, "decode_time_by_batch_size_mean{batch_size=3}"), steps["batch_size=3;"])
}

// MLC LLM's metrics go back to zero when the engine restarts (or its metrics are reset): the running
// totals start a new cumulative series.
func TestRestartStartsTheTotalsOver(t *testing.T) {
	body := enginescrapetest.Testdata(t, page)
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: body}})
	r := enginescrapetest.NewRig(t, metadata.Type, defaultConfig(), engine, srv.URL)
	r.Scrape(t, 1)
	srv.Set("/metrics", enginescrapetest.Route{Body: []byte("engine_prefill_time_sum\t0.5\nprompt_tokens_sum\t17")})
	md := r.Scrape(t, 1)
	assert.Equal(t, map[string]float64{"": 17}, enginescrapetest.Sums(md, "prompt_tokens_sum"))
	assert.Equal(t, 1, r.Logs.FilterMessageSnippet("reset").Len(), "%v", r.Logs.All())
}

func TestDefaultEndpointIsTheServePort(t *testing.T) {
	cfg := defaultConfig()
	assert.Equal(t, "http://localhost:8000", cfg.Endpoint)
	assert.Equal(t, "/metrics", cfg.MetricsPath)
}

// Truncated, NaN, an HTML error page (with an error status and with 200), refused and reset: one warning
// each over three scrapes, no panic, and the good lines kept.
func TestBadInput(t *testing.T) {
	enginescrapetest.CheckBadInput(t, enginescrapetest.BadInput{
		Type: metadata.Type, Engine: engine, Config: defaultConfig, Page: enginescrapetest.Testdata(t, page),
		MetricsPath: "/metrics", Gauge: "decode_time_by_batch_size_mean",
	})
}

func TestReceiverLifecycle(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: enginescrapetest.Testdata(t, page)}})
	enginescrapetest.CheckLifecycle(t, NewFactory(), srv.URL)
}
