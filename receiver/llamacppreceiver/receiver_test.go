package llamacppreceiver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// server is a llama-server stand-in: each path answers with a status and a body the test chooses.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]route
}

type route struct {
	status int
	body   []byte
}

func newServer(t *testing.T) *server {
	s := &server{routes: map[string]route{
		"/metrics": {200, fixtures.Read(t, "llamacpp/ik_llama_cpp_pr695_comment_metrics_example.txt")},
		"/slots":   {200, testdata(t, "slots_2026.json")},
		"/props":   {200, testdata(t, "props_2026.json")},
		"/health":  {200, []byte(`{"status":"ok"}`)},
	}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		rt, ok := s.routes[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(rt.status)
		_, _ = w.Write(rt.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) set(path string, status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[path] = route{status, body}
}

func testdata(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

type scrapeRig struct {
	scraper *enginescrape.Scraper
	logs    *observer.ObservedLogs
}

func newRig(t *testing.T, endpoint string) *scrapeRig {
	cfg := createDefaultConfig().(*Config)
	cfg.Endpoint = endpoint
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(componentType)
	set.Logger = zap.New(core)
	s, err := enginescrape.NewScraper(&cfg.Config, engine, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return &scrapeRig{scraper: s, logs: logs}
}

func (r *scrapeRig) scrape(t *testing.T) pmetric.Metrics {
	md, err := r.scraper.Scrape(context.Background())
	require.NoError(t, err)
	return md
}

// points returns name's data points keyed by their attributes ("" for none).
func points(md pmetric.Metrics, name string) map[string]float64 {
	out := map[string]float64{}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := 0; i < ms.Len(); i++ {
		m := ms.At(i)
		if m.Name() != name || m.Type() != pmetric.MetricTypeGauge {
			continue
		}
		for j := 0; j < m.Gauge().DataPoints().Len(); j++ {
			dp := m.Gauge().DataPoints().At(j)
			key := ""
			for k, v := range dp.Attributes().All() {
				key += k + "=" + v.AsString()
			}
			if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
				out[key] = float64(dp.IntValue())
			} else {
				out[key] = dp.DoubleValue()
			}
		}
	}
	return out
}

func TestScrapesMetricsSlotsHealthAndBuild(t *testing.T) {
	srv := newServer(t)
	r := newRig(t, srv.URL)
	md := r.scrape(t)
	assert.Equal(t, map[string]float64{"": 1}, points(md, schema.MetricLLMEngineUp))
	assert.Equal(t, map[string]float64{"": 1}, points(md, schema.MetricLLMEngineReady))
	assert.Equal(t, map[string]float64{"llm.slot.state=busy": 2, "llm.slot.state=idle": 2}, points(md, schema.MetricLLMSchedulerSlots))
	assert.Equal(t, map[string]float64{"": 4 * 8192}, points(md, schema.MetricLLMKVCacheCapacity))
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, "llama_cpp", res[schema.AttrLLMEngineName])
	assert.Equal(t, "b6402-3f4e5d6c", res[schema.AttrLLMEngineVersion])
	body := fixtures.Read(t, "llamacpp/ik_llama_cpp_pr695_comment_metrics_example.txt")
	assert.Equal(t, map[string]float64{"": fixtures.Samples(body, "llamacpp:kv_cache_usage_ratio")[0].Value}, points(md, "llamacpp:kv_cache_usage_ratio"))
	assert.Zero(t, r.logs.FilterLevelExact(zapcore.WarnLevel).Len())
}

func TestOlderSlotsShape(t *testing.T) {
	srv := newServer(t)
	srv.set("/slots", 200, testdata(t, "slots_2024.json"))
	md := newRig(t, srv.URL).scrape(t)
	assert.Equal(t, map[string]float64{"llm.slot.state=busy": 1, "llm.slot.state=idle": 1}, points(md, schema.MetricLLMSchedulerSlots))
	assert.Equal(t, map[string]float64{"": 8192}, points(md, schema.MetricLLMKVCacheCapacity))
}

func TestLoadingModel(t *testing.T) {
	srv := newServer(t)
	srv.set("/health", 503, testdata(t, "health_loading.json"))
	r := newRig(t, srv.URL)
	for range 2 {
		assert.Equal(t, map[string]float64{"": 0}, points(r.scrape(t), schema.MetricLLMEngineReady))
	}
	assert.Zero(t, r.logs.FilterLevelExact(zapcore.WarnLevel).Len(), "loading is a state, not a problem")
}

func TestMetricsDisabled(t *testing.T) {
	srv := newServer(t)
	srv.set("/metrics", 501, []byte(`{"error":{"code":501,"message":"This server does not support metrics endpoint. Start it with --metrics","type":"not_supported_error"}}`))
	r := newRig(t, srv.URL)
	for range 3 {
		md := r.scrape(t)
		assert.Equal(t, map[string]float64{"": 0}, points(md, schema.MetricLLMEngineUp))
	}
	warnings := r.logs.FilterLevelExact(zapcore.WarnLevel).All()
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0].ContextMap()["hint"], "--metrics")
}

func TestSlotsProblems(t *testing.T) {
	t.Run("wrong type names the field", func(t *testing.T) {
		srv := newServer(t)
		srv.set("/slots", 200, []byte(`[{"id":0,"n_ctx":4096,"is_processing":"yes"}]`))
		r := newRig(t, srv.URL)
		for range 3 {
			md := r.scrape(t)
			assert.Empty(t, points(md, schema.MetricLLMSchedulerSlots))
			assert.NotEmpty(t, points(md, "llamacpp:requests_processing"), "the Prometheus series still arrive")
		}
		entries := r.logs.FilterMessageSnippet("could not be read").All()
		require.Len(t, entries, 1)
		assert.Contains(t, entries[0].ContextMap()["error"], "is_processing")
	})
	t.Run("slots disabled", func(t *testing.T) {
		srv := newServer(t)
		srv.set("/slots", 501, []byte(`{"error":{"code":501,"message":"This server does not support slots endpoint."}}`))
		r := newRig(t, srv.URL)
		for range 3 {
			assert.Equal(t, map[string]float64{"": 1}, points(r.scrape(t), schema.MetricLLMEngineUp))
		}
		assert.Equal(t, 1, r.logs.FilterMessageSnippet("state endpoint unavailable").Len())
	})
	t.Run("unknown and missing fields", func(t *testing.T) {
		srv := newServer(t)
		srv.set("/slots", 200, []byte(`[{"id":0,"future_field":{"x":1}},{"is_processing":true}]`))
		md := newRig(t, srv.URL).scrape(t)
		assert.Equal(t, map[string]float64{"llm.slot.state=busy": 1, "llm.slot.state=idle": 1}, points(md, schema.MetricLLMSchedulerSlots))
		assert.Empty(t, points(md, schema.MetricLLMKVCacheCapacity), "no n_ctx, no capacity")
	})
}

func TestReceiverLifecycle(t *testing.T) {
	srv := newServer(t)
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.Endpoint = srv.URL
	cfg.CollectionInterval = 50 * time.Millisecond
	cfg.InitialDelay = 0
	require.NoError(t, componenttest.CheckConfigStruct(cfg))
	sink := new(consumertest.MetricsSink)
	rcv, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(componentType), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return len(sink.AllMetrics()) >= 2 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, rcv.Shutdown(context.Background()))
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
