package sglangreceiver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/sglangreceiver/internal/metadata"
)

type route = enginescrapetest.Route

var points = enginescrapetest.Gauges

func newServer(t *testing.T, routes map[string][]byte) *enginescrapetest.Server {
	rs := map[string]route{}
	for path, body := range routes {
		rs[path] = route{Body: body}
	}
	return enginescrapetest.NewServer(t, rs)
}

var testdata = enginescrapetest.Testdata

func currentServer(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"/metrics":     fixtures.Read(t, "sglang/datadog_sglang_metrics.txt"),
		"/server_info": testdata(t, "server_info_v0.5.json"),
		"/v1/loads":    testdata(t, "loads_v0.5.json"),
		"/health":      {},
	}
}

func scrape(t *testing.T, endpoint string, times int) (pmetric.Metrics, *observer.ObservedLogs) {
	r := enginescrapetest.NewRig(t, metadata.Type, NewFactory().CreateDefaultConfig().(*enginescrape.Config), engine, endpoint)
	return r.Scrape(t, times), r.Logs
}

func TestCurrentSGLang(t *testing.T) {
	srv := newServer(t, currentServer(t))
	md, logs := scrape(t, srv.URL, 2)
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, "sglang", res[schema.AttrLLMEngineName])
	assert.Equal(t, "0.5.10.post1", res[schema.AttrLLMEngineVersion])
	assert.Equal(t, "4", res[schema.AttrLLMParallelTpSize])
	assert.Equal(t, "2", res[schema.AttrLLMParallelDpSize])
	assert.Equal(t, map[string]float64{
		"llm.engine.index=0;llm.request.state=running;": 37, "llm.engine.index=0;llm.request.state=waiting;": 4,
		"llm.engine.index=1;llm.request.state=running;": 12, "llm.engine.index=1;llm.request.state=waiting;": 0,
	}, points(md, schema.MetricLLMEngineLoadRequests))
	assert.Equal(t, map[string]float64{"llm.engine.index=0;": 183211, "llm.engine.index=1;": 51000}, points(md, schema.MetricLLMEngineLoadTokens))
	assert.Equal(t, map[string]float64{"": 1}, points(md, schema.MetricLLMEngineReady))
	body := fixtures.Read(t, "sglang/datadog_sglang_metrics.txt")
	want := fixtures.Samples(body, "sglang:num_running_reqs")
	assert.Len(t, points(md, "sglang:num_running_reqs"), len(want))
	assert.Zero(t, logs.FilterLevelExact(zapcore.WarnLevel).Len())
}

// An older SGLang: only the deprecated endpoints answer.
func TestOlderSGLangEndpoints(t *testing.T) {
	routes := currentServer(t)
	routes["/get_server_info"] = routes["/server_info"]
	routes["/get_load"] = testdata(t, "get_load_v0.4.json")
	delete(routes, "/server_info")
	delete(routes, "/v1/loads")
	srv := newServer(t, routes)
	md, logs := scrape(t, srv.URL, 2)
	assert.Equal(t, map[string]float64{
		"llm.engine.index=0;llm.request.state=running;": 7, "llm.engine.index=0;llm.request.state=waiting;": 2,
		"llm.engine.index=1;llm.request.state=running;": 3, "llm.engine.index=1;llm.request.state=waiting;": 0,
	}, points(md, schema.MetricLLMEngineLoadRequests), "num_reqs counts running and waiting together")
	assert.Equal(t, map[string]float64{"llm.engine.index=0;": 20480, "llm.engine.index=1;": 4096}, points(md, schema.MetricLLMEngineLoadTokens))
	assert.Equal(t, "0.5.10.post1", md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineVersion])
	assert.Zero(t, logs.FilterLevelExact(zapcore.WarnLevel).Len(), "falling back to an older spelling is not a problem")
}

func TestLoadsProblems(t *testing.T) {
	t.Run("wrong type names the field", func(t *testing.T) {
		routes := currentServer(t)
		routes["/v1/loads"] = []byte(`[{"dp_rank":0,"num_running_reqs":"many"}]`)
		md, logs := scrape(t, newServer(t, routes).URL, 3)
		assert.NotEmpty(t, points(md, "sglang:num_running_reqs"), "the Prometheus series still arrive")
		entries := logs.FilterMessageSnippet("could not be read").All()
		require.Len(t, entries, 1)
		assert.Contains(t, entries[0].ContextMap()["error"], "num_running_reqs")
	})
	t.Run("no load endpoint at all", func(t *testing.T) {
		routes := currentServer(t)
		delete(routes, "/v1/loads")
		md, logs := scrape(t, newServer(t, routes).URL, 3)
		assert.Equal(t, map[string]float64{"": 1}, points(md, schema.MetricLLMEngineUp))
		assert.Equal(t, 1, logs.FilterMessageSnippet("state endpoint unavailable").Len())
	})
	t.Run("metrics not enabled", func(t *testing.T) {
		routes := currentServer(t)
		delete(routes, "/metrics")
		md, logs := scrape(t, newServer(t, routes).URL, 3)
		assert.Equal(t, map[string]float64{"": 0}, points(md, schema.MetricLLMEngineUp))
		warnings := logs.FilterLevelExact(zapcore.WarnLevel).All()
		require.Len(t, warnings, 1)
		assert.Contains(t, warnings[0].ContextMap()["hint"], "--enable-metrics")
	})
}

func TestReceiverLifecycle(t *testing.T) {
	srv := newServer(t, currentServer(t))
	enginescrapetest.CheckLifecycle(t, NewFactory(), srv.URL)
}

func FuzzParseJSONEndpoints(f *testing.F) {
	for _, name := range []string{"loads_v0.5.json", "get_load_v0.4.json", "server_info_v0.5.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"loads":[{"dp_rank":"x"}]}`))
	f.Fuzz(func(_ *testing.T, body []byte) {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		_ = parseLoads(body, enginescrape.NewStateOutputForTest(rm))
		_ = parseServerInfo(body, enginescrape.NewStateOutputForTest(rm))
	})
}
