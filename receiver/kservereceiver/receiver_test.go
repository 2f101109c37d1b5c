package kservereceiver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/kservereceiver/internal/metadata"
)

// The pages are written from KServe's and vLLM's source (see testdata/README.md): no real capture of a
// KServe model server is public.
const (
	hfVLLMPage = "metrics_hf_vllm_v0.20.txt" // the Hugging Face runtime with its vLLM backend, port 8080
	qpextPage  = "metrics_qpext_v0.20.txt"   // a custom predictor behind the queue proxy's qpext, port 9088
)

func defaultConfig() *enginescrape.Config {
	return NewFactory().CreateDefaultConfig().(*enginescrape.Config)
}

func scrape(t *testing.T, page string) (*enginescrapetest.Rig, []byte) {
	t.Helper()
	body := enginescrapetest.Testdata(t, page)
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: body}})
	r := enginescrapetest.NewRig(t, metadata.Type, defaultConfig(), engine, srv.URL)
	return r, body
}

// The vLLM backend's families arrive on the model server's own page, as one replica: one resource, the
// engine is kserve and the backend vllm.
func TestHuggingFaceRuntimeWithVLLM(t *testing.T) {
	r, body := scrape(t, hfVLLMPage)
	md := r.Scrape(t, 2)
	require.Equal(t, 1, md.ResourceMetrics().Len(), "one replica, not one per engine")
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, schema.EngineKserve, res[schema.AttrLLMEngineName])
	assert.Equal(t, schema.EngineVLLM, res[schema.AttrLLMEngineBackend])
	assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
	assert.Zero(t, r.Warnings())
	want := fixtures.Samples(body, "vllm:num_requests_running")
	require.Len(t, want, 1)
	assert.Equal(t, map[string]float64{"model_name=qwen2-5-7b-instruct;engine=0;": want[0].Value}, enginescrapetest.Gauges(md, "vllm:num_requests_running"))
}

// Behind qpext the page has KServe's step histograms with the serverless labels, and the queue proxy's
// families; no backend family, so no backend.
func TestQpextPage(t *testing.T) {
	r, body := scrape(t, qpextPage)
	md := r.Scrape(t, 2)
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, schema.EngineKserve, res[schema.AttrLLMEngineName])
	assert.NotContains(t, res, schema.AttrLLMEngineBackend)
	assert.Zero(t, r.Warnings())
	queue := enginescrapetest.Gauges(md, "revision_queue_depth")
	require.Len(t, queue, 1)
	for _, v := range queue {
		assert.Equal(t, fixtures.Samples(body, "revision_queue_depth")[0].Value, v)
	}
}

func TestDefaults(t *testing.T) {
	cfg := defaultConfig()
	assert.Equal(t, "http://localhost:8080", cfg.Endpoint)
	assert.Equal(t, "/metrics", cfg.MetricsPath)
}

func TestBadInput(t *testing.T) {
	enginescrapetest.CheckBadInput(t, enginescrapetest.BadInput{
		Type: metadata.Type, Engine: engine, Config: defaultConfig, Page: enginescrapetest.Testdata(t, hfVLLMPage),
		MetricsPath: "/metrics", Gauge: "vllm:num_requests_running",
	})
}

func TestReceiverLifecycle(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: enginescrapetest.Testdata(t, hfVLLMPage)}})
	enginescrapetest.CheckLifecycle(t, NewFactory(), srv.URL)
}
