package enginescrape_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
)

// A state endpoint fills only the canonical names the same scrape's Prometheus families do not provide; a
// select source provides its name only when a series with the selected value is there.
func TestStateFillsOnlyWhatPrometheusLacks(t *testing.T) {
	engine := enginescrape.Engine{Receiver: enginescrape.StandInReceiver, Name: schema.EngineTriton, State: []enginescrape.StateEndpoint{{
		Name: "probe", Paths: []string{"/probe"},
		Parse: func(_ []byte, out *enginescrape.StateOutput) error {
			out.Gauge(schema.MetricLLMSchedulerRequestsWaiting, 5)
			out.Gauge(schema.MetricLLMSchedulerRequestsRunning, 6)
			out.Counter(schema.MetricLLMRequestsStarted, 7, out.Now())
			return nil
		},
	}}}
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{
		"/metrics": {Body: []byte(`# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="m",request_type="waiting",version="1"} 1
nv_trt_llm_request_metrics{model="m",request_type="max",version="1"} 64
`)},
		"/probe": {Body: []byte(`{}`)},
	})
	cfg := enginescrape.NewDefaultConfig(srv.URL, "/metrics")
	md := enginescrapetest.NewRig(t, component.MustNewType("triton"), &cfg, engine, srv.URL).Scrape(t, 1)
	assert.Empty(t, enginescrapetest.Gauges(md, schema.MetricLLMSchedulerRequestsWaiting), "request_type=waiting is on the Prometheus endpoint")
	assert.Equal(t, map[string]float64{"": 6}, enginescrapetest.Gauges(md, schema.MetricLLMSchedulerRequestsRunning), "no request_type=active series")
	assert.Equal(t, map[string]float64{"": 7}, enginescrapetest.Sums(md, schema.MetricLLMRequestsStarted))
}

// An engine that answers its Prometheus path with an error status still serves its standalone endpoints;
// the others wait for the Prometheus endpoint, and an unreachable engine is not polled at all.
func TestStandaloneStateWithoutPrometheus(t *testing.T) {
	polled := map[string]int{}
	endpoint := func(name string, standalone bool) enginescrape.StateEndpoint {
		return enginescrape.StateEndpoint{
			Name: name, Paths: []string{"/" + name}, Standalone: standalone,
			Parse: func([]byte, *enginescrape.StateOutput) error { polled[name]++; return nil },
		}
	}
	engine := enginescrape.Engine{Receiver: enginescrape.StandInReceiver, Name: schema.EngineTensorrtLLM, State: []enginescrape.StateEndpoint{endpoint("alone", true), endpoint("dependent", false)}}
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{
		"/metrics": {Status: 404}, "/alone": {Body: []byte(`[]`)}, "/dependent": {Body: []byte(`[]`)},
	})
	cfg := enginescrape.NewDefaultConfig(srv.URL, "/metrics")
	r := enginescrapetest.NewRig(t, component.MustNewType("tensorrt_llm"), &cfg, engine, srv.URL)
	r.Scrape(t, 2)
	assert.Equal(t, map[string]int{"alone": 2}, polled)

	srv.Close()
	r.Scrape(t, 1)
	assert.Equal(t, map[string]int{"alone": 2}, polled, "unreachable: nothing polled")
}

// A state endpoint's metric takes its unit, description and data type from the schema, and writing a
// metric as another instrument than the schema declares is a programming error that no test can miss.
func TestStateMetricIsTheSchemas(t *testing.T) {
	sch, err := schema.Default()
	assert.NoError(t, err)
	md := pmetric.NewMetrics()
	out := enginescrape.NewStateOutputForTest(md.ResourceMetrics().AppendEmpty())
	out.Gauge(schema.MetricLLMSchedulerSlots, 3)
	out.Counter(schema.MetricLLMRequestsStarted, 7, out.Now())
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	assert.Equal(t, 2, ms.Len())
	for i, want := range []pmetric.MetricType{pmetric.MetricTypeGauge, pmetric.MetricTypeSum} {
		m := ms.At(i)
		def := sch.Metric(m.Name())
		assert.Equal(t, def.Unit, m.Unit())
		assert.Equal(t, def.Description, m.Description())
		assert.Equal(t, want, m.Type(), m.Name())
	}
	assert.PanicsWithValue(t, "state endpoint writes llm.requests.started as a gauge, but the schema declares a counter",
		func() { out.Gauge(schema.MetricLLMRequestsStarted, 1) })
	assert.Panics(t, func() { out.Counter(schema.MetricLLMSchedulerSlots, 1, out.Now()) })
}
