package llamacppreceiver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/llamacppreceiver/internal/metadata"
)

type route = enginescrapetest.Route

var gauges = enginescrapetest.Gauges

var testdata = enginescrapetest.Testdata

// newServer is a current llama-server started with --metrics.
func newServer(t *testing.T) *enginescrapetest.Server {
	return enginescrapetest.NewServer(t, map[string]route{
		"/metrics": {Body: fixtures.Read(t, "llamacpp/ik_llama_cpp_pr695_comment_metrics_example.txt")},
		"/slots":   {Body: testdata(t, "slots_2026.json")},
		"/props":   {Body: testdata(t, "props_2026.json")},
		"/health":  {Body: []byte(`{"status":"ok"}`)},
	})
}

func newRig(t *testing.T, endpoint string) *enginescrapetest.Rig {
	return enginescrapetest.NewRig(t, metadata.Type, NewFactory().CreateDefaultConfig().(*enginescrape.Config), engine, endpoint)
}

func TestScrapesMetricsSlotsHealthAndBuild(t *testing.T) {
	srv := newServer(t)
	r := newRig(t, srv.URL)
	md := r.Scrape(t, 1)
	assert.Equal(t, map[string]float64{"": 1}, gauges(md, schema.MetricLLMEngineUp))
	assert.Equal(t, map[string]float64{"": 1}, gauges(md, schema.MetricLLMEngineReady))
	assert.Equal(t, map[string]float64{"llm.slot.state=busy;": 2, "llm.slot.state=idle;": 2}, gauges(md, schema.MetricLLMSchedulerSlots))
	assert.Equal(t, map[string]float64{"": 4 * 8192}, gauges(md, schema.MetricLLMKVCacheCapacity))
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, "llama_cpp", res[schema.AttrLLMEngineName])
	assert.Equal(t, "b6402-3f4e5d6c", res[schema.AttrLLMEngineVersion])
	body := fixtures.Read(t, "llamacpp/ik_llama_cpp_pr695_comment_metrics_example.txt")
	assert.Equal(t, map[string]float64{"": fixtures.Samples(body, "llamacpp:kv_cache_usage_ratio")[0].Value}, gauges(md, "llamacpp:kv_cache_usage_ratio"))
	assert.Zero(t, r.Warnings())
}

func TestOlderSlotsShape(t *testing.T) {
	srv := newServer(t)
	srv.Set("/slots", route{Body: testdata(t, "slots_2024.json")})
	md := newRig(t, srv.URL).Scrape(t, 1)
	assert.Equal(t, map[string]float64{"llm.slot.state=busy;": 1, "llm.slot.state=idle;": 1}, gauges(md, schema.MetricLLMSchedulerSlots))
	assert.Equal(t, map[string]float64{"": 8192}, gauges(md, schema.MetricLLMKVCacheCapacity))
}

func TestLoadingModel(t *testing.T) {
	srv := newServer(t)
	srv.Set("/health", route{Status: 503, Body: testdata(t, "health_loading.json")})
	r := newRig(t, srv.URL)
	assert.Equal(t, map[string]float64{"": 0}, gauges(r.Scrape(t, 2), schema.MetricLLMEngineReady))
	assert.Zero(t, r.Warnings(), "loading is a state, not a problem")
}

func TestMetricsDisabled(t *testing.T) {
	srv := newServer(t)
	srv.Set("/metrics", route{Status: 501, Body: []byte(`{"error":{"code":501,"message":"This server does not support metrics endpoint. Start it with --metrics","type":"not_supported_error"}}`)})
	r := newRig(t, srv.URL)
	assert.Equal(t, map[string]float64{"": 0}, gauges(r.Scrape(t, 3), schema.MetricLLMEngineUp))
	warnings := r.Logs.FilterMessageSnippet("error status").All()
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0].ContextMap()["hint"], "--metrics")
}

func TestSlotsProblems(t *testing.T) {
	t.Run("wrong type names the field", func(t *testing.T) {
		srv := newServer(t)
		srv.Set("/slots", route{Body: []byte(`[{"id":0,"n_ctx":4096,"is_processing":"yes"}]`)})
		r := newRig(t, srv.URL)
		md := r.Scrape(t, 3)
		assert.Empty(t, gauges(md, schema.MetricLLMSchedulerSlots))
		assert.NotEmpty(t, gauges(md, "llamacpp:requests_processing"), "the Prometheus series still arrive")
		entries := r.Logs.FilterMessageSnippet("could not be read").All()
		require.Len(t, entries, 1)
		assert.Contains(t, entries[0].ContextMap()["error"], "is_processing")
	})
	t.Run("slots disabled", func(t *testing.T) {
		srv := newServer(t)
		srv.Set("/slots", route{Status: 501, Body: []byte(`{"error":{"code":501,"message":"This server does not support slots endpoint."}}`)})
		r := newRig(t, srv.URL)
		assert.Equal(t, map[string]float64{"": 1}, gauges(r.Scrape(t, 3), schema.MetricLLMEngineUp))
		assert.Equal(t, 1, r.Logs.FilterMessageSnippet("state endpoint unavailable").Len())
	})
	t.Run("unknown and missing fields", func(t *testing.T) {
		srv := newServer(t)
		srv.Set("/slots", route{Body: []byte(`[{"id":0,"future_field":{"x":1}},{"is_processing":true}]`)})
		md := newRig(t, srv.URL).Scrape(t, 1)
		assert.Equal(t, map[string]float64{"llm.slot.state=busy;": 1, "llm.slot.state=idle;": 1}, gauges(md, schema.MetricLLMSchedulerSlots))
		assert.Empty(t, gauges(md, schema.MetricLLMKVCacheCapacity), "no n_ctx, no capacity")
	})
}

func TestReceiverLifecycle(t *testing.T) {
	srv := newServer(t)
	enginescrapetest.CheckLifecycle(t, NewFactory(), srv.URL)
}

func FuzzParseSlots(f *testing.F) {
	for _, name := range []string{"slots_2026.json", "slots_2024.json", "props_2026.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`[{"is_processing":"yes"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		md := pmetric.NewMetrics()
		out := enginescrape.NewStateOutputForTest(md.ResourceMetrics().AppendEmpty())
		if err := parseSlots(body, out); err == nil && md.DataPointCount() < 2 {
			t.Fatalf("a parsed /slots always reports busy and idle")
		}
		_, _ = parseBuild(body)
	})
}
