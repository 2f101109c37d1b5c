package dynamoreceiver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/dynamoreceiver/internal/metadata"
)

// The pages are written from Dynamo's source (see testdata/README.md): no real capture of a Dynamo
// frontend or worker is public.
const (
	frontendPage     = "metrics_frontend_2026.txt"      // the frontend's /metrics (HTTP port 8000)
	vllmWorkerPage   = "metrics_worker_vllm_2026.txt"   // a vLLM worker's system port, current kvstats names
	sglangWorkerPage = "metrics_worker_sglang_2025.txt" // an SGLang worker's system port, the kvstats_ names
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

// The frontend's page says it is the frontend tier, and has no backend: it runs no engine.
func TestFrontendTier(t *testing.T) {
	r, body := scrape(t, frontendPage)
	md := r.Scrape(t, 2)
	require.Equal(t, 1, md.ResourceMetrics().Len())
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, schema.EngineDynamo, res[schema.AttrLLMEngineName])
	assert.Equal(t, schema.ServeTierFrontend, res[schema.AttrLLMServeTier])
	assert.NotContains(t, res, schema.AttrLLMEngineBackend)
	assert.Zero(t, r.Warnings())
	want := fixtures.Samples(body, "dynamo_frontend_model_kv_cache_block_size")
	require.Len(t, want, 1)
	assert.Equal(t, map[string]float64{"model=qwen/qwen3-0.6b;": want[0].Value}, enginescrapetest.Gauges(md, "dynamo_frontend_model_kv_cache_block_size"))
}

// A worker's page carries its engine's families beside the runtime's: one replica, the worker tier, and
// the engine as the backend.
func TestWorkerTierAndBackend(t *testing.T) {
	for page, backend := range map[string]string{vllmWorkerPage: schema.EngineVLLM, sglangWorkerPage: schema.EngineSglang} {
		t.Run(page, func(t *testing.T) {
			r, _ := scrape(t, page)
			md := r.Scrape(t, 2)
			require.Equal(t, 1, md.ResourceMetrics().Len(), "one replica, not one per engine")
			res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
			assert.Equal(t, schema.EngineDynamo, res[schema.AttrLLMEngineName])
			assert.Equal(t, schema.ServeTierWorker, res[schema.AttrLLMServeTier])
			assert.Equal(t, backend, res[schema.AttrLLMEngineBackend])
			assert.Zero(t, r.Warnings())
		})
	}
}

// resource_attributes can say the tier where detection cannot (a page scraped before its families exist).
func TestConfiguredTierWins(t *testing.T) {
	body := enginescrapetest.Testdata(t, frontendPage)
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: body}})
	cfg := defaultConfig()
	cfg.ResourceAttributes = map[string]string{schema.AttrLLMServeTier: schema.ServeTierWorker}
	r := enginescrapetest.NewRig(t, metadata.Type, cfg, engine, srv.URL)
	md := r.Scrape(t, 1)
	assert.Equal(t, schema.ServeTierWorker, md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMServeTier])
}

func TestDefaults(t *testing.T) {
	cfg := defaultConfig()
	assert.Equal(t, "http://localhost:8000", cfg.Endpoint)
	assert.Equal(t, "/metrics", cfg.MetricsPath)
}

func TestBadInput(t *testing.T) {
	for page, gauge := range map[string]string{frontendPage: "dynamo_frontend_queued_requests", vllmWorkerPage: "dynamo_component_inflight_requests"} {
		t.Run(page, func(t *testing.T) {
			enginescrapetest.CheckBadInput(t, enginescrapetest.BadInput{
				Type: metadata.Type, Engine: engine, Config: defaultConfig, Page: enginescrapetest.Testdata(t, page),
				MetricsPath: "/metrics", Gauge: gauge,
			})
		})
	}
}

func TestReceiverLifecycle(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: enginescrapetest.Testdata(t, frontendPage)}})
	enginescrapetest.CheckLifecycle(t, NewFactory(), srv.URL)
}

// A frontend with the KV router also writes the router's dynamo_component_router_* families; it is still
// the frontend.
func TestFrontendWithKVRouterIsTheFrontend(t *testing.T) {
	body := append(enginescrapetest.Testdata(t, frontendPage), []byte("# TYPE dynamo_component_router_requests_total counter\n"+
		`dynamo_component_router_requests_total{dynamo_component="router",dynamo_namespace="dynamo"} 1206`+"\n")...)
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: body}})
	r := enginescrapetest.NewRig(t, metadata.Type, defaultConfig(), engine, srv.URL)
	md := r.Scrape(t, 1)
	assert.Equal(t, schema.ServeTierFrontend, md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMServeTier])
}
