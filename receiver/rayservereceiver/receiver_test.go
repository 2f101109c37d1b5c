package rayservereceiver

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/rayservereceiver/internal/metadata"
)

type route = enginescrapetest.Route

var testdata = enginescrapetest.Testdata

// rig serves the metrics endpoint and the dashboard on separate servers, as Ray does.
func rig(t *testing.T, dashboardBody []byte, dashboard bool) *enginescrapetest.Rig {
	metrics := enginescrapetest.NewServer(t, map[string]route{"/metrics": {Body: testdata(t, "metrics_ray_serve_2.4x.txt")}})
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.DashboardEndpoint = ""
	if dashboard {
		dash := enginescrapetest.NewServer(t, map[string]route{"/api/serve/applications/": {Body: dashboardBody}})
		cfg.DashboardEndpoint = dash.URL
	}
	require.NoError(t, cfg.Validate())
	return enginescrapetest.NewRig(t, metadata.Type, &cfg.Config, engineFor(cfg), metrics.URL)
}

func TestServeStatesFromTheDashboard(t *testing.T) {
	r := rig(t, testdata(t, "serve_applications.json"), true)
	md := r.Scrape(t, 2)
	assert.Equal(t, map[string]float64{
		"llm.serve.application=llm-app;llm.serve.deployment=LLMServer;llm.serve.replica.state=RUNNING;":  2,
		"llm.serve.application=llm-app;llm.serve.deployment=LLMServer;llm.serve.replica.state=STARTING;": 1,
		"llm.serve.application=llm-app;llm.serve.deployment=Router;llm.serve.replica.state=RUNNING;":     1,
	}, enginescrapetest.Gauges(md, schema.MetricLLMServeReplicas))
	assert.Equal(t, map[string]float64{
		"llm.serve.application=llm-app;llm.serve.deployment=LLMServer;": 3,
		"llm.serve.application=llm-app;llm.serve.deployment=Router;":    1,
	}, enginescrapetest.Gauges(md, schema.MetricLLMServeReplicasTarget))
	assert.Equal(t, map[string]float64{
		"llm.serve.application=llm-app;llm.serve.deployment=LLMServer;llm.serve.deployment.status=UPSCALING;": 1,
		"llm.serve.application=llm-app;llm.serve.deployment=Router;llm.serve.deployment.status=HEALTHY;":      1,
	}, enginescrapetest.Gauges(md, schema.MetricLLMServeDeploymentUp))
	assert.NotEmpty(t, enginescrapetest.Gauges(md, "ray_serve_replica_processing_queries"))
	assert.Equal(t, "ray_serve", md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
	assert.Zero(t, r.Warnings())
}

func TestDashboardProblems(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		r := rig(t, nil, false)
		md := r.Scrape(t, 2)
		assert.Empty(t, enginescrapetest.Gauges(md, schema.MetricLLMServeReplicas))
		assert.Zero(t, r.Warnings())
	})
	t.Run("wrong type names the field", func(t *testing.T) {
		r := rig(t, []byte(`{"applications":{"a":{"deployments":{"d":{"target_num_replicas":"three"}}}}}`), true)
		md := r.Scrape(t, 3)
		assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
		entries := r.Logs.FilterMessageSnippet("could not be read").All()
		require.Len(t, entries, 1)
		assert.Contains(t, entries[0].ContextMap()["error"], "target_num_replicas")
	})
	t.Run("unknown and missing fields", func(t *testing.T) {
		r := rig(t, []byte(`{"new_section":{},"applications":{"a":{"deployments":{"d":{"replicas":[{"state":"RUNNING","future":1}]}}}}}`), true)
		md := r.Scrape(t, 1)
		assert.Equal(t, map[string]float64{"llm.serve.application=a;llm.serve.deployment=d;llm.serve.replica.state=RUNNING;": 1},
			enginescrapetest.Gauges(md, schema.MetricLLMServeReplicas))
		assert.Empty(t, enginescrapetest.Gauges(md, schema.MetricLLMServeReplicasTarget))
	})
}

func TestConfigValidate(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	assert.Equal(t, "http://localhost:8265", cfg.DashboardEndpoint)
	assert.NoError(t, cfg.Validate())
	cfg.DashboardEndpoint = "localhost:8265"
	assert.ErrorContains(t, cfg.Validate(), `dashboard_endpoint "localhost:8265"`)

	// Credentials in the dashboard URL are never quoted back, whether or not the URL parses.
	for _, dashboard := range []string{"ftp://ray:dash-secret@ray-head:8265", "http://ray:dash-secret@ray-head:82x5"} {
		cfg.DashboardEndpoint = dashboard
		err := cfg.Validate()
		require.Error(t, err, dashboard)
		assert.NotContains(t, err.Error(), "dash-secret")
		assert.Contains(t, err.Error(), "ray:xxxxx@ray-head")
	}
}

func TestReceiverLifecycle(t *testing.T) {
	metrics := enginescrapetest.NewServer(t, map[string]route{"/metrics": {Body: testdata(t, "metrics_ray_serve_2.4x.txt")}})
	dash := enginescrapetest.NewServer(t, map[string]route{"/api/serve/applications/": {Body: testdata(t, "serve_applications.json")}})
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.Endpoint, cfg.DashboardEndpoint = metrics.URL, dash.URL
	cfg.CollectionInterval, cfg.InitialDelay = 50*time.Millisecond, 0
	require.NoError(t, componenttest.CheckConfigStruct(cfg))
	sink := new(consumertest.MetricsSink)
	rcv, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return len(sink.AllMetrics()) >= 2 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, rcv.Shutdown(context.Background()))
	assert.NotEmpty(t, enginescrapetest.Gauges(sink.AllMetrics()[1], schema.MetricLLMServeReplicas), "the dashboard's states arrive through the factory-built receiver")
}

func FuzzParseApplications(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "serve_applications.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"applications":{"a":{"deployments":{"d":{"target_num_replicas":"x"}}}}}`))
	f.Fuzz(func(_ *testing.T, body []byte) {
		md := pmetric.NewMetrics()
		_ = parseApplications(body, enginescrape.NewStateOutputForTest(md.ResourceMetrics().AppendEmpty()))
	})
}
