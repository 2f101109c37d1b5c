package enginescrape

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

const stormlog = "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"

// engineServer serves whatever body (and status) the test sets, like an engine whose state changes.
type engineServer struct {
	*httptest.Server
	body        atomic.Pointer[[]byte]
	status      atomic.Int32
	contentType atomic.Pointer[string]
}

func newEngineServer(t *testing.T, body []byte) *engineServer {
	es := &engineServer{}
	es.set(body)
	es.status.Store(http.StatusOK)
	ct := "text/plain; version=0.0.4; charset=utf-8"
	es.contentType.Store(&ct)
	es.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			w.Header().Set("Content-Type", *es.contentType.Load())
			w.WriteHeader(int(es.status.Load()))
			_, _ = w.Write(*es.body.Load())
		case "/version":
			_, _ = w.Write([]byte(`{"version":"0.11.2"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(es.Close)
	return es
}

func (es *engineServer) set(body []byte) { es.body.Store(&body) }

type harness struct {
	scraper   *Scraper
	logs      *observer.ObservedLogs
	telemetry *componenttest.Telemetry
}

func newHarness(t *testing.T, endpoint string, mutate ...func(*Config)) *harness {
	cfg := NewDefaultConfig(endpoint, "/metrics")
	for _, m := range mutate {
		m(&cfg)
	}
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	set := receivertest.NewNopSettings(component.MustNewType("vllm"))
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	s, err := NewScraper(&cfg, Engine{Receiver: StandInReceiver, Name: schema.EngineVLLM, VersionPath: "/version", ParseVersion: func(b []byte) (string, error) {
		m := regexp.MustCompile(`"version":"([^"]+)"`).FindSubmatch(b)
		if m == nil {
			return "", fmt.Errorf("no version in %q", b)
		}
		return string(m[1]), nil
	}}, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, s.Shutdown(context.Background())) })
	return &harness{scraper: s, logs: logs, telemetry: tel}
}

// selfMetric sums the receiver's own counter name over its attribute sets (0 when never recorded).
func (h *harness) selfMetric(t *testing.T, name string) int64 {
	m, err := h.telemetry.GetMetric(name)
	if err != nil {
		return 0
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is an int64 counter", name)
	var total int64
	for _, dp := range sum.DataPoints {
		total += dp.Value
	}
	return total
}

func (h *harness) scrape(t *testing.T) pmetric.Metrics {
	md, err := h.scraper.Scrape(context.Background())
	require.NoError(t, err, "engine problems are data, never a scrape error")
	return md
}

// logCount counts log lines whose message contains substr.
func (h *harness) logCount(substr string) int {
	return h.logs.FilterMessageSnippet(substr).Len()
}

func metricByName(md pmetric.Metrics, name string) (pmetric.Metric, bool) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				if ms.At(k).Name() == name {
					return ms.At(k), true
				}
			}
		}
	}
	return pmetric.Metric{}, false
}

func engineUp(t *testing.T, md pmetric.Metrics) int64 {
	m, ok := metricByName(md, schema.MetricLLMEngineUp)
	require.True(t, ok, "llm.engine.up is always emitted")
	return m.Gauge().DataPoints().At(0).IntValue()
}

func gaugeValue(t *testing.T, md pmetric.Metrics, name string) float64 {
	m, ok := metricByName(md, name)
	require.True(t, ok, "metric %s missing", name)
	return m.Gauge().DataPoints().At(0).DoubleValue()
}

func TestScrapeRealVLLMCapture(t *testing.T) {
	body := fixtures.Read(t, stormlog)
	es := newEngineServer(t, body)
	h := newHarness(t, es.URL)
	md := h.scrape(t)

	assert.EqualValues(t, 1, engineUp(t, md))
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	assert.Equal(t, map[string]any{
		schema.AttrLLMEngineName:     "vllm",
		schema.AttrLLMEngineVersion:  "0.11.2",
		schema.AttrServiceInstanceID: strings.TrimPrefix(es.URL, "http://"),
		schema.AttrServerAddress:     "127.0.0.1",
		schema.AttrServerPort:        int64(es.Listener.Addr().(*net.TCPAddr).Port),
	}, res.AsRaw())

	// A gauge keeps its value and labels.
	waiting := fixtures.Samples(body, "vllm:num_requests_waiting")
	require.Len(t, waiting, 1)
	assert.Equal(t, waiting[0].Value, gaugeValue(t, md, "vllm:num_requests_waiting"))
	m, _ := metricByName(md, "vllm:num_requests_waiting")
	model, _ := m.Gauge().DataPoints().At(0).Attributes().Get("model_name")
	assert.Contains(t, model.Str(), "Qwen2.5-0.5B-Instruct")

	// A counter is a monotonic cumulative sum whose start is the engine's `_created` time.
	m, ok := metricByName(md, "vllm:prompt_tokens_total")
	require.True(t, ok)
	require.Equal(t, pmetric.MetricTypeSum, m.Type())
	assert.True(t, m.Sum().IsMonotonic())
	dp := m.Sum().DataPoints().At(0)
	assert.Equal(t, fixtures.Samples(body, "vllm:prompt_tokens_total")[0].Value, dp.DoubleValue())
	created := fixtures.Samples(body, "vllm:prompt_tokens_created")[0].Value
	assert.InDelta(t, created, float64(dp.StartTimestamp())/1e9, 1e-3)
	_, emitted := metricByName(md, "vllm:prompt_tokens_created")
	assert.False(t, emitted, "_created series are start times, not metrics")

	// A histogram keeps count, sum and buckets.
	m, ok = metricByName(md, "vllm:e2e_request_latency_seconds")
	require.True(t, ok)
	hdp := m.Histogram().DataPoints().At(0)
	assert.Equal(t, uint64(fixtures.Sum(body, "vllm:e2e_request_latency_seconds_count")), hdp.Count())
	assert.InDelta(t, fixtures.Sum(body, "vllm:e2e_request_latency_seconds_sum"), hdp.Sum(), 1e-9)
	buckets := fixtures.Samples(body, "vllm:e2e_request_latency_seconds_bucket")
	assert.Equal(t, len(buckets)-1, hdp.ExplicitBounds().Len(), "+Inf is implicit in OTLP")
	var total uint64
	for _, c := range hdp.BucketCounts().AsRaw() {
		total += c
	}
	assert.Equal(t, hdp.Count(), total)
	assert.Zero(t, h.logs.FilterLevelExact(zapcore.WarnLevel).Len(), "a clean capture logs no warning")
}

// Every vLLM capture scrapes with every series of the text arriving.
func TestScrapeEveryVLLMCapture(t *testing.T) {
	for _, rel := range fixtures.Glob(t, "vllm/*.txt") {
		t.Run(rel, func(t *testing.T) {
			body := fixtures.Read(t, rel)
			es := newEngineServer(t, body)
			h := newHarness(t, es.URL)
			md := h.scrape(t)
			assert.EqualValues(t, 1, engineUp(t, md))
			assert.Zero(t, h.logCount("Skipped unparseable lines"))
			for _, name := range []string{"vllm:num_requests_running", "ray_vllm:num_requests_running"} {
				if want := fixtures.Samples(body, name); len(want) > 0 {
					m, ok := metricByName(md, name)
					require.True(t, ok, name)
					assert.Equal(t, len(want), m.Gauge().DataPoints().Len(), name)
				}
			}
		})
	}
}

func TestTruncatedBodyKeepsCompleteLines(t *testing.T) {
	body := fixtures.Read(t, stormlog)
	cut := strings.Index(string(body), "vllm:generation_tokens_total{") + 20 // mid-line
	es := newEngineServer(t, body[:cut])
	h := newHarness(t, es.URL)
	for range 3 {
		md := h.scrape(t)
		assert.EqualValues(t, 1, engineUp(t, md))
		assert.Equal(t, fixtures.Samples(body, "vllm:num_requests_waiting")[0].Value, gaugeValue(t, md, "vllm:num_requests_waiting"))
		_, ok := metricByName(md, "vllm:prompt_tokens_total")
		assert.True(t, ok, "complete lines before the cut arrive")
		_, ok = metricByName(md, "vllm:generation_tokens_total")
		assert.False(t, ok, "the cut line is skipped")
	}
	assert.Equal(t, 1, h.logCount("Skipped unparseable lines"), "one warning, not one per scrape")
	entry := h.logs.FilterMessageSnippet("Skipped unparseable lines").All()[0]
	assert.Contains(t, entry.ContextMap()["endpoint"], es.URL+"/metrics")
}

func TestNaNValuesAreDroppedAndTheRestKept(t *testing.T) {
	body := "# TYPE llamacpp:n_busy_slots_per_decode gauge\nllamacpp:n_busy_slots_per_decode -nan(ind)\n" +
		"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine=\"0\"} nan\n" +
		"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\"} 3\n" +
		"# TYPE vllm:e2e_request_latency_seconds histogram\n" +
		"vllm:e2e_request_latency_seconds_bucket{le=\"1.0\"} 2\nvllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 3\n" +
		"vllm:e2e_request_latency_seconds_count 3\nvllm:e2e_request_latency_seconds_sum NaN\n"
	es := newEngineServer(t, []byte(body))
	h := newHarness(t, es.URL)
	for range 2 {
		md := h.scrape(t)
		assert.EqualValues(t, 1, engineUp(t, md))
		assert.Equal(t, 3.0, gaugeValue(t, md, "vllm:num_requests_running"))
		_, ok := metricByName(md, "vllm:kv_cache_usage_perc")
		assert.False(t, ok, "a NaN gauge has no value to report")
		m, ok := metricByName(md, "vllm:e2e_request_latency_seconds")
		require.True(t, ok, "a histogram with a NaN sum keeps its buckets")
		assert.False(t, m.Histogram().DataPoints().At(0).HasSum())
		assert.EqualValues(t, 3, m.Histogram().DataPoints().At(0).Count())
	}
	assert.Equal(t, 2, h.logCount("Dropped NaN samples"), "one line per family, not per scrape")
	assert.Zero(t, h.logCount("Skipped unparseable lines"), "-nan(ind) is a NaN, not a syntax error")
}

func TestHTMLErrorPage(t *testing.T) {
	page := []byte("<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<h1>Bad Gateway</h1>\n</body>\n</html>\n")
	for _, status := range []int{http.StatusOK, http.StatusBadGateway} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			es := newEngineServer(t, page)
			es.status.Store(int32(status))
			html := "text/html"
			es.contentType.Store(&html)
			h := newHarness(t, es.URL)
			for range 3 {
				md := h.scrape(t)
				assert.EqualValues(t, 0, engineUp(t, md))
				assert.Equal(t, 1, md.MetricCount(), "only llm.engine.up")
			}
			warnings := h.logs.FilterLevelExact(zapcore.WarnLevel).All()
			require.Len(t, warnings, 1, "one warning for three failed scrapes")
			assert.Equal(t, "text/html", warnings[0].ContextMap()["content_type"])

			// The engine recovers: series arrive and the recovery is said once.
			es.set(fixtures.Read(t, stormlog))
			es.status.Store(http.StatusOK)
			md := h.scrape(t)
			assert.EqualValues(t, 1, engineUp(t, md))
			assert.Equal(t, 1, h.logCount("healthy again"))
		})
	}
}

func TestLargeBody(t *testing.T) {
	capture := fixtures.Read(t, stormlog)
	var b strings.Builder
	b.Write(capture)
	b.WriteString("\n# TYPE wide_labels gauge\n")
	wide := strings.Repeat("x", 2000)
	for i := 0; b.Len() < 10<<20; i++ {
		fmt.Fprintf(&b, "wide_labels{series=\"%d\",a=\"%s\",b=\"%s\"} %d\n", i, wide, wide, i)
	}
	body := []byte(b.String())
	series := len(fixtures.Samples(body, "wide_labels"))

	t.Run("under max_body_size", func(t *testing.T) {
		es := newEngineServer(t, body)
		h := newHarness(t, es.URL)
		md := h.scrape(t)
		m, ok := metricByName(md, "wide_labels")
		require.True(t, ok)
		assert.Equal(t, series, m.Gauge().DataPoints().Len())
		assert.Equal(t, fixtures.Samples(capture, "vllm:num_requests_running")[0].Value, gaugeValue(t, md, "vllm:num_requests_running"))
	})
	t.Run("over max_body_size", func(t *testing.T) {
		es := newEngineServer(t, body)
		h := newHarness(t, es.URL, func(c *Config) { c.MaxBodySize = 1 << 20 })
		for range 2 {
			md := h.scrape(t)
			assert.EqualValues(t, 1, engineUp(t, md))
			assert.Equal(t, fixtures.Samples(capture, "vllm:num_requests_running")[0].Value, gaugeValue(t, md, "vllm:num_requests_running"),
				"the series before the limit arrive")
			m, _ := metricByName(md, "wide_labels")
			assert.Less(t, m.Gauge().DataPoints().Len(), series)
		}
		assert.Equal(t, 1, h.logCount("exceeds max_body_size"))
	})
}

func TestConnectionRefused(t *testing.T) {
	es := newEngineServer(t, fixtures.Read(t, stormlog))
	endpoint := es.URL
	es.Close() // nothing listens there now
	h := newHarness(t, endpoint)
	for range 3 {
		md := h.scrape(t)
		assert.EqualValues(t, 0, engineUp(t, md))
		attrs := md.ResourceMetrics().At(0).Resource().Attributes()
		instance, _ := attrs.Get(schema.AttrServiceInstanceID)
		assert.Equal(t, strings.TrimPrefix(endpoint, "http://"), instance.Str(), "a down replica is still identified")
	}
	entries := h.logs.FilterMessageSnippet("unreachable").All()
	require.Len(t, entries, 1)
	assert.Contains(t, fmt.Sprint(entries[0].ContextMap()["error"]), "connection refused")
}

func TestCounterResetStartsANewCumulativeSeries(t *testing.T) {
	capture := string(fixtures.Read(t, stormlog))
	// Multiprocess mode (no `_created`), as with --api-server-count > 1: reset detection is all we have.
	var kept []string
	for _, line := range strings.Split(capture, "\n") {
		if !strings.Contains(line, "_created") {
			kept = append(kept, line)
		}
	}
	before := strings.Join(kept, "\n")
	prompt := fixtures.Samples([]byte(before), "vllm:prompt_tokens_total")[0].Value
	// The engine restarted: its prompt-token counter is back near zero.
	after := regexp.MustCompile(`(?m)^(vllm:prompt_tokens_total\{.*\}) .*$`).ReplaceAllString(before, "${1} 512.0")
	require.NotEqual(t, 512.0, prompt)

	es := newEngineServer(t, []byte(before))
	h := newHarness(t, es.URL)
	first := h.scrape(t)
	m, _ := metricByName(first, "vllm:prompt_tokens_total")
	firstStart := m.Sum().DataPoints().At(0).StartTimestamp()
	firstAt := m.Sum().DataPoints().At(0).Timestamp()

	es.set([]byte(after))
	second := h.scrape(t)
	m, _ = metricByName(second, "vllm:prompt_tokens_total")
	dp := m.Sum().DataPoints().At(0)
	assert.Equal(t, 512.0, dp.DoubleValue())
	assert.Greater(t, dp.StartTimestamp(), firstStart, "a reset starts a new cumulative series")
	assert.Equal(t, firstAt+1, dp.StartTimestamp(), "the restart happened after the previous scrape")
	assert.Equal(t, 1, h.logCount("Counters went back to zero"))

	third := h.scrape(t)
	m, _ = metricByName(third, "vllm:prompt_tokens_total")
	assert.Equal(t, dp.StartTimestamp(), m.Sum().DataPoints().At(0).StartTimestamp(), "the new start holds")
	assert.Equal(t, 1, h.logCount("Counters went back to zero"), "said once per restart")

	// The other counters of the same scrape are not disturbed.
	m, _ = metricByName(third, "vllm:generation_tokens_total")
	assert.Equal(t, fixtures.Samples([]byte(before), "vllm:generation_tokens_total")[0].Value, m.Sum().DataPoints().At(0).DoubleValue())
}

func TestConfigValidate(t *testing.T) {
	cfg := NewDefaultConfig("", "metrics")
	cfg.MaxBodySize = 0
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"endpoint: must be set", `metrics_path "metrics": must start with /`, "max_body_size: must be positive"} {
		assert.Contains(t, err.Error(), want)
	}
	cfg = NewDefaultConfig("localhost:8000", "/metrics")
	assert.ErrorContains(t, cfg.Validate(), "scheme must be http or https")
	cfg = NewDefaultConfig("http://localhost:8000", "/metrics")
	assert.NoError(t, cfg.Validate())
}
