package enginescrape

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/schema"
)

// What an attacker or a misconfigured engine can send (issue 15, item 7): repeated series, infinite values,
// a counter that flaps, credentials in the endpoint URL, and pages with more series than anyone meant.

// A series written twice in one page must arrive once: the first line wins, the repeats are counted and
// said once, naming the family but not the label values in full.
func TestRepeatedSeriesKeepTheFirst(t *testing.T) {
	huge := strings.Repeat("v", 4000)
	body := "# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"1\"} 2\ng{a=\"2\"} 3\n" +
		"# TYPE c_total counter\nc_total{x=\"y\",z=\"w\"} 5\nc_total{z=\"w\",x=\"y\"} 6\n" +
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_bucket{le=\"1\"} 1\nh_count 2\nh_count 9\nh_sum 3\n" +
		"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"0.5\"} 7\ns_count 4\ns_sum 8\n" +
		"# TYPE wide gauge\nwide{big=\"" + huge + "\"} 1\nwide{big=\"" + huge + "\"} 1\n"
	es := newEngineServer(t, []byte(body))
	h := newHarness(t, es.URL)
	for range 3 {
		md := h.scrape(t)
		assert.EqualValues(t, 1, engineUp(t, md))

		g, ok := metricByName(md, "g")
		require.True(t, ok)
		require.Equal(t, 2, g.Gauge().DataPoints().Len(), "one point per series")
		assert.Equal(t, 1.0, g.Gauge().DataPoints().At(0).DoubleValue(), "the first line wins")

		c, ok := metricByName(md, "c_total")
		require.True(t, ok)
		require.Equal(t, 1, c.Sum().DataPoints().Len(), "label order does not make a new series")
		assert.Equal(t, 5.0, c.Sum().DataPoints().At(0).DoubleValue())

		hist, ok := metricByName(md, "h")
		require.True(t, ok, "a repeated bucket line is not a malformed histogram")
		require.Equal(t, 1, hist.Histogram().DataPoints().Len())
		assert.EqualValues(t, 2, hist.Histogram().DataPoints().At(0).Count(), "the first _count wins")
		assert.Equal(t, []uint64{1, 1}, hist.Histogram().DataPoints().At(0).BucketCounts().AsRaw())

		s, ok := metricByName(md, "s")
		require.True(t, ok)
		require.Equal(t, 1, s.Summary().DataPoints().At(0).QuantileValues().Len())
		assert.Equal(t, 1.0, s.Summary().DataPoints().At(0).QuantileValues().At(0).Value())

		wide, ok := metricByName(md, "wide")
		require.True(t, ok)
		assert.Equal(t, 1, wide.Gauge().DataPoints().Len())
	}
	assert.Zero(t, h.logCount("malformed"))
	entries := h.logs.FilterMessageSnippet("repeated series").All()
	require.Len(t, entries, 1, "said once, not per scrape or per family")
	assert.Equal(t, zapcore.WarnLevel, entries[0].Level)
	fields := entries[0].ContextMap()
	assert.Contains(t, fields["endpoint"], es.URL+"/metrics")
	assert.Equal(t, []any{"g", "c_total", "h", "s", "wide"}, fields["families"])
	assert.EqualValues(t, 6, fields["samples"], "repeats dropped in the scrape")
	for _, e := range h.logs.All() {
		assert.NotContains(t, fmt.Sprint(e.Message, e.ContextMap()), huge, "a huge label value is not logged whole")
	}
	assert.EqualValues(t, 18, h.selfMetric(t, "otelcol_engine_scrape_dropped_points"), "6 repeats in each of 3 scrapes")
}

// +Inf and -Inf are no more usable than NaN: gauge and counter samples holding them are dropped and said
// once per family. le="+Inf" is a bucket bound, not a value, and keeps working.
func TestInfiniteValuesAreDroppedLikeNaN(t *testing.T) {
	body := "# TYPE g gauge\ng{engine=\"0\"} +Inf\ng{engine=\"1\"} 4\n# TYPE neg gauge\nneg -Inf\n" +
		"# TYPE c_total counter\nc_total{engine=\"0\"} Inf\nc_total{engine=\"1\"} 9\n" +
		"# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_count 3\nh_sum +Inf\n" +
		"# TYPE hbad histogram\nhbad_bucket{le=\"1\"} +Inf\nhbad_bucket{le=\"+Inf\"} +Inf\nhbad_count +Inf\n" +
		"# TYPE s summary\ns{quantile=\"0.5\"} +Inf\ns{quantile=\"0.9\"} 2\ns_count 5\ns_sum -Inf\n" +
		"# TYPE ok gauge\nok 1\n"
	es := newEngineServer(t, []byte(body))
	h := newHarness(t, es.URL)
	for range 3 {
		md := h.scrape(t)
		assert.EqualValues(t, 1, engineUp(t, md))
		assert.Equal(t, 1.0, gaugeValue(t, md, "ok"))

		g, ok := metricByName(md, "g")
		require.True(t, ok)
		require.Equal(t, 1, g.Gauge().DataPoints().Len())
		assert.Equal(t, 4.0, g.Gauge().DataPoints().At(0).DoubleValue())
		_, ok = metricByName(md, "neg")
		assert.False(t, ok, "-Inf is dropped too")

		c, ok := metricByName(md, "c_total")
		require.True(t, ok)
		require.Equal(t, 1, c.Sum().DataPoints().Len())
		assert.Equal(t, 9.0, c.Sum().DataPoints().At(0).DoubleValue())

		hist, ok := metricByName(md, "h")
		require.True(t, ok, "an infinite sum leaves the buckets usable")
		dp := hist.Histogram().DataPoints().At(0)
		assert.False(t, dp.HasSum())
		assert.EqualValues(t, 3, dp.Count())
		assert.Equal(t, []float64{1}, dp.ExplicitBounds().AsRaw(), "le=\"+Inf\" is the implicit last bucket")
		assert.Equal(t, []uint64{2, 1}, dp.BucketCounts().AsRaw())
		_, ok = metricByName(md, "hbad")
		assert.False(t, ok, "an infinite count is no count")

		s, ok := metricByName(md, "s")
		require.True(t, ok)
		sdp := s.Summary().DataPoints().At(0)
		require.Equal(t, 1, sdp.QuantileValues().Len())
		assert.Equal(t, 0.9, sdp.QuantileValues().At(0).Quantile())
		assert.Equal(t, 0.0, sdp.Sum(), "no infinite sum")

		forEachNumber(md, func(name string, v float64) {
			assert.False(t, math.IsInf(v, 0), "%s carries an infinite value", name)
		})
	}
	assert.Equal(t, 5, h.logCount("Dropped infinite samples"), "one line per family (g, neg, c_total, h, s), not per scrape")
	assert.Equal(t, 1, h.logCount("Dropped a malformed series"), "hbad")
	entry := h.logs.FilterMessageSnippet("Dropped infinite samples").All()[0]
	assert.Contains(t, entry.ContextMap()["endpoint"], es.URL+"/metrics")
}

// forEachNumber visits every double a metric carries: gauge and sum values, histogram sums, summary sums and
// quantile values.
func forEachNumber(md pmetric.Metrics, visit func(name string, v float64)) {
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for _, m := range ms.All() {
		switch m.Type() {
		case pmetric.MetricTypeGauge:
			for _, dp := range m.Gauge().DataPoints().All() {
				visit(m.Name(), dp.DoubleValue())
			}
		case pmetric.MetricTypeSum:
			for _, dp := range m.Sum().DataPoints().All() {
				visit(m.Name(), dp.DoubleValue())
			}
		case pmetric.MetricTypeHistogram:
			for _, dp := range m.Histogram().DataPoints().All() {
				visit(m.Name(), dp.Sum())
			}
		case pmetric.MetricTypeSummary:
			for _, dp := range m.Summary().DataPoints().All() {
				visit(m.Name(), dp.Sum())
				for _, q := range dp.QuantileValues().All() {
					visit(m.Name(), q.Value())
				}
			}
		}
	}
}

// Two engines behind one Service: the counter flaps between their values and every flap down is a reset.
// Each reset still starts a new cumulative series and is counted, but the log says it once per family.
func TestFlappingCounterIsSaidOnce(t *testing.T) {
	engineA := "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{engine=\"0\"} 1000\n# TYPE g gauge\ng 1\n"
	engineB := "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{engine=\"0\"} 5000\n# TYPE g gauge\ng 2\n"
	es := newEngineServer(t, []byte(engineA))
	h := newHarness(t, es.URL)
	var lastStart uint64
	resets := 0
	for i := range 48 {
		body := engineA
		if i%2 == 1 {
			body = engineB
		}
		es.set([]byte(body))
		md := h.scrape(t)
		m, ok := metricByName(md, "vllm:prompt_tokens_total")
		require.True(t, ok)
		start := uint64(m.Sum().DataPoints().At(0).StartTimestamp())
		if i > 0 && body == engineA {
			resets++
			assert.Greater(t, start, lastStart, "scrape %d: a flap down starts a new cumulative series", i)
		}
		lastStart = start
	}
	require.Equal(t, 23, resets)
	assert.Equal(t, 1, h.logCount("went back to zero"), "one line for 23 resets")
	assert.Equal(t, 1, h.logCount("keep going back to zero"), "the flapping itself is worth one warning")
	assert.EqualValues(t, 23, h.selfMetric(t, "otelcol_engine_counter_resets"), "every reset is still counted")
}

// Credentials in the endpoint URL are sent as HTTP basic auth, the way Go's client and Prometheus send
// them, to the metrics, version and state paths; the password is in no log line or error.
func TestCredentialsInTheEndpointURL(t *testing.T) {
	const user, password = "scraper", "s3cr3t-pw"
	var gotVersion bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write([]byte(counterBody))
		case "/version":
			gotVersion = true
			_, _ = w.Write([]byte(`{"version":"0.11.2"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	withCredentials := func(pw string) string {
		return strings.Replace(srv.URL, "http://", "http://"+user+":"+pw+"@", 1)
	}
	noPassword := func(t *testing.T, logs *observer.ObservedLogs, secret string) {
		t.Helper()
		for _, e := range logs.All() {
			assert.NotContains(t, fmt.Sprint(e.Message, e.ContextMap()), secret)
		}
	}

	t.Run("sent as basic auth", func(t *testing.T) {
		h := newHarness(t, withCredentials(password))
		md := h.scrape(t)
		assert.EqualValues(t, 1, engineUp(t, md))
		assert.Equal(t, 7.0, gaugeValue(t, md, "g"))
		assert.True(t, gotVersion, "the version path gets the credentials too")
		noPassword(t, h.logs, password)
	})
	t.Run("rejected credentials are logged redacted", func(t *testing.T) {
		h := newHarness(t, withCredentials("wrong-pw"))
		md := h.scrape(t)
		assert.EqualValues(t, 0, engineUp(t, md))
		entries := h.logs.FilterMessageSnippet("error status").All()
		require.Len(t, entries, 1)
		assert.Equal(t, strings.Replace(srv.URL, "http://", "http://"+user+":xxxxx@", 1)+"/metrics", entries[0].ContextMap()["endpoint"])
		noPassword(t, h.logs, "wrong-pw")
	})
	t.Run("unreachable endpoint", func(t *testing.T) {
		closed := httptest.NewServer(http.NotFoundHandler())
		endpoint := strings.Replace(closed.URL, "http://", "http://"+user+":"+password+"@", 1)
		closed.Close()
		h := newHarness(t, endpoint)
		assert.EqualValues(t, 0, engineUp(t, h.scrape(t)))
		require.Equal(t, 1, h.logCount("unreachable"))
		noPassword(t, h.logs, password)
	})
	t.Run("configuration errors", func(t *testing.T) {
		for endpoint, secret := range map[string]string{
			"ftp://" + user + ":" + password + "@localhost:8000":  password,
			"http://" + user + ":" + password + "@localhost:80x0": password,
			"http://" + user + ":s3cr/et@localhost:8000":          "s3cr",   // an unescaped '/' ends the host early
			"gopher://" + password + "@localhost:8000":            password, // a user name alone may be a token
		} {
			cfg := NewDefaultConfig(endpoint, "/metrics")
			err := cfg.Validate()
			require.Error(t, err, endpoint)
			assert.NotContains(t, err.Error(), secret, endpoint)
			assert.Contains(t, err.Error(), "xxxxx", endpoint)
		}
	})
	t.Run("credentials and an Authorization header", func(t *testing.T) {
		cfg := NewDefaultConfig(withCredentials(password), "/metrics")
		cfg.Headers.Set("authorization", "Bearer abc")
		err := cfg.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "auth extension")
		assert.NotContains(t, err.Error(), password)
	})
}

// A page with more samples than sample_limit (default 50000) is rejected as a whole, as Prometheus does:
// llm.engine.up=0 and one warning with the endpoint and the count; the next page under the limit recovers.
func TestSampleLimitRejectsTheWholeScrape(t *testing.T) {
	var b strings.Builder
	b.WriteString("# TYPE g gauge\ng 1\n# TYPE wide gauge\n")
	for i := range 60000 {
		fmt.Fprintf(&b, "wide{series=\"%d\"} 1\n", i)
	}
	es := newEngineServer(t, []byte(b.String()))
	h := newHarness(t, es.URL)
	for range 3 {
		md := h.scrape(t)
		assert.EqualValues(t, 0, engineUp(t, md))
		assert.Equal(t, 1, md.MetricCount(), "only llm.engine.up: nothing of an over-limit page is kept")
	}
	entries := h.logs.FilterMessageSnippet("sample_limit").All()
	require.Len(t, entries, 1, "one warning for three rejected scrapes")
	fields := entries[0].ContextMap()
	assert.Contains(t, fields["endpoint"], es.URL+"/metrics")
	assert.EqualValues(t, 50000, fields["sample_limit"])
	assert.EqualValues(t, 60001, fields["samples"])
	assert.EqualValues(t, 3, h.selfMetric(t, "otelcol_engine_scrape_failures"))

	es.set([]byte(counterBody))
	md := h.scrape(t)
	assert.EqualValues(t, 1, engineUp(t, md))
	assert.Equal(t, 7.0, gaugeValue(t, md, "g"))
	assert.Equal(t, 1, h.logCount("healthy again"))
}

func TestSampleLimitSetting(t *testing.T) {
	var b strings.Builder
	b.WriteString("# TYPE wide gauge\n")
	for i := range 120 {
		fmt.Fprintf(&b, "wide{series=\"%d\"} 1\n", i)
	}
	es := newEngineServer(t, []byte(b.String()))
	for limit, up := range map[int]int64{0: 1, 120: 1, 119: 0} {
		h := newHarness(t, es.URL, func(c *Config) { c.SampleLimit = limit })
		md := h.scrape(t)
		assert.Equal(t, up, engineUp(t, md), "sample_limit %d", limit)
		if up == 1 {
			m, ok := metricByName(md, "wide")
			require.True(t, ok)
			assert.Equal(t, 120, m.Gauge().DataPoints().Len())
		}
	}
	cfg := NewDefaultConfig("http://localhost:8000", "/metrics")
	assert.Equal(t, 50000, cfg.SampleLimit)
	cfg.SampleLimit = -1
	assert.ErrorContains(t, cfg.Validate(), "sample_limit: must be 0 (no limit) or positive, got -1")
}

// After the first line, a family's resets are said again only an hour later, with the count in between.
func TestCounterResetsAreSaidAgainAfterAnHour(t *testing.T) {
	high := "# TYPE c_total counter\nc_total 900\n"
	low := "# TYPE c_total counter\nc_total 10\n"
	es := newEngineServer(t, []byte(high))
	h := newHarness(t, es.URL)
	clock := time.Unix(1700000000, 0)
	h.scraper.clock = func() time.Time { return clock }
	restart := func() {
		es.set([]byte(high))
		h.scrape(t)
		clock = clock.Add(10 * time.Minute)
		es.set([]byte(low))
		h.scrape(t)
		clock = clock.Add(10 * time.Minute)
	}
	restart()
	restart()
	assert.Equal(t, 1, h.logCount("went back to zero"))
	clock = clock.Add(time.Hour)
	restart()
	entries := h.logs.FilterMessageSnippet("went back to zero").All()
	require.Len(t, entries, 2)
	assert.EqualValues(t, 1, entries[1].ContextMap()["resets_not_logged_since_last_line"])
	assert.EqualValues(t, 3, h.selfMetric(t, "otelcol_engine_counter_resets"))
	assert.Zero(t, h.logCount("keep going back to zero"), "two resets an hour apart are restarts, not flapping")
}

// State endpoints on the engine get the endpoint's credentials; one on another address (Ray's dashboard)
// gets only its own URL's, and neither password is logged.
func TestStateEndpointCredentials(t *testing.T) {
	type seen struct{ user, password string }
	got := map[string]seen{}
	handler := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			u, p, _ := r.BasicAuth()
			got[name+r.URL.Path] = seen{u, p}
			if r.URL.Path == "/metrics" {
				_, _ = w.Write([]byte(counterBody))
				return
			}
			_, _ = w.Write([]byte("{}"))
		}
	}
	engine := httptest.NewServer(handler("engine"))
	t.Cleanup(engine.Close)
	dashboard := httptest.NewServer(handler("dashboard"))
	t.Cleanup(dashboard.Close)

	cfg := NewDefaultConfig(strings.Replace(engine.URL, "http://", "http://eng:engine-pw@", 1), "/metrics")
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(component.MustNewType("ray_serve"))
	set.Logger = zap.New(core)
	noop := func([]byte, *StateOutput) error { return nil }
	s, err := NewScraper(&cfg, Engine{Receiver: StandInReceiver, Name: schema.EngineRayServe, State: []StateEndpoint{
		{Name: "local", Paths: []string{"/state"}, Parse: noop},
		{Name: "remote", Paths: []string{"/state"}, Parse: noop, BaseURL: strings.Replace(dashboard.URL, "http://", "http://dash:dash-pw@", 1)},
		{Name: "remote_bare", Paths: []string{"/bare"}, Parse: noop, BaseURL: dashboard.URL},
	}}, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	_, err = s.Scrape(context.Background())
	require.NoError(t, err)

	assert.Equal(t, map[string]seen{
		"engine/metrics":  {"eng", "engine-pw"},
		"engine/state":    {"eng", "engine-pw"},
		"dashboard/state": {"dash", "dash-pw"},
		"dashboard/bare":  {}, // the endpoint's credentials never go to another address
	}, got)
	for _, e := range logs.All() {
		assert.NotContains(t, fmt.Sprint(e.Message, e.ContextMap()), "-pw")
	}

	_, err = NewScraper(&cfg, Engine{Receiver: StandInReceiver, Name: schema.EngineRayServe, State: []StateEndpoint{
		{Name: "remote", Paths: []string{"/state"}, Parse: noop, BaseURL: "http://dash:pa/ss@host:8265"},
	}}, set)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "pa/ss")
	assert.Contains(t, err.Error(), "dash:xxxxx@host:8265")
}
