package nimreceiver

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/nimreceiver/internal/metadata"
)

const capture = "nim/datadog_nvidia_nim_metrics.txt"

// nimVersion is what NIM's /v1/version answers (the DataDog integration's fixture beside the capture).
const nimVersion = `{"release":"1.0.0","api":"1.0.0"}`

func defaultConfig() *enginescrape.Config {
	return NewFactory().CreateDefaultConfig().(*enginescrape.Config)
}

func nimServer(t *testing.T) *enginescrapetest.Server {
	return enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{
		metricsPath: {Body: fixtures.Read(t, capture)},
		versionPath: {Body: []byte(nimVersion)},
	})
}

func TestScrapesTheCapture(t *testing.T) {
	body := fixtures.Read(t, capture)
	r := enginescrapetest.NewRig(t, metadata.Type, defaultConfig(), engine, nimServer(t).URL)
	md := r.Scrape(t, 2)
	assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, schema.EngineNim, res[schema.AttrLLMEngineName], "the receiver, not the names, says the page is NIM's")
	assert.Equal(t, "1.0.0", res[schema.AttrLLMEngineVersion])
	assert.Zero(t, r.Warnings(), "the capture parses cleanly")
	for _, family := range []string{"num_requests_running", "num_requests_waiting", "num_request_max", "gpu_cache_usage_perc"} {
		want := fixtures.Samples(body, family)
		require.Len(t, want, 1, family)
		assert.Equal(t, map[string]float64{"model_name=meta/llama-3.1-8b-instruct;": want[0].Value}, enginescrapetest.Gauges(md, family), family)
	}
}

func TestDefaults(t *testing.T) {
	cfg := defaultConfig()
	assert.Equal(t, "http://localhost:8000", cfg.Endpoint)
	assert.Equal(t, "/v1/metrics", cfg.MetricsPath)
}

func TestParseVersion(t *testing.T) {
	v, err := parseVersion([]byte(nimVersion))
	require.NoError(t, err)
	assert.Equal(t, "1.0.0", v)
	for body, want := range map[string]string{
		`{"api":"1.0.0"}`:   `no "release" field`,
		`{"release":""}`:    `no "release" field`,
		`{"release":1}`:     "release",
		`<html>oops</html>`: "version response",
		`{"version":"0.6"}`: `no "release" field`,
	} {
		_, err := parseVersion([]byte(body))
		require.Error(t, err, body)
		assert.Contains(t, err.Error(), want, body)
	}
}

// Whatever /v1/version answers, parsing never panics and a version it returns is valid text.
func FuzzParseVersion(f *testing.F) {
	for _, seed := range []string{nimVersion, `{"api":"1.0.0"}`, `{"release":7}`, `{}`, `<html></html>`, `{"release":"` + "\xff" + `"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := parseVersion(body)
		if err == nil && (v == "" || !utf8.ValidString(v)) {
			t.Fatalf("version %q from %q", v, body)
		}
	})
}

func TestBadInput(t *testing.T) {
	enginescrapetest.CheckBadInput(t, enginescrapetest.BadInput{
		Type: metadata.Type, Engine: engine, Config: defaultConfig, Page: fixtures.Read(t, capture),
		MetricsPath: metricsPath, Gauge: "num_requests_running", Others: map[string][]byte{versionPath: []byte(nimVersion)},
	})
}

func TestReceiverLifecycle(t *testing.T) {
	enginescrapetest.CheckLifecycle(t, NewFactory(), nimServer(t).URL)
}
