package enginescrape

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

const counterBody = "# TYPE c_total counter\nc_total 10001\n# TYPE g gauge\ng 7\n"

// A body cut inside a value must not turn "10001" into a valid, wrong "100".
func TestCutInsideAValueIsNotAValue(t *testing.T) {
	cut := strings.Index(counterBody, "10001") + 3
	t.Run("max_body_size", func(t *testing.T) {
		es := newEngineServer(t, []byte(counterBody+"g2 1\n"))
		h := newHarness(t, es.URL, func(c *Config) { c.MaxBodySize = int64(cut) })
		md := h.scrape(t)
		_, ok := metricByName(md, "c_total")
		assert.False(t, ok, "the cut line is dropped, not parsed as c_total 100")
	})
	t.Run("connection closed mid-body", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if !assert.NoError(t, err) {
				return
			}
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n")
			_, _ = buf.WriteString("# TYPE g gauge\ng 7\n" + counterBody[:cut])
			_ = buf.Flush()
			_ = conn.Close()
		}))
		defer srv.Close()
		h := newHarness(t, srv.URL)
		md := h.scrape(t)
		assert.Equal(t, 7.0, gaugeValue(t, md, "g"), "complete lines before the cut arrive")
		_, ok := metricByName(md, "c_total")
		assert.False(t, ok)
		assert.Equal(t, 1, h.logCount("ended early"))
	})
}

// One scrape without a series (a cut body) must not make the series restart when it comes back.
func TestMissedScrapeKeepsTheStartTime(t *testing.T) {
	es := newEngineServer(t, []byte(counterBody))
	h := newHarness(t, es.URL)
	start := func(md pmetric.Metrics) int64 {
		m, ok := metricByName(md, "c_total")
		require.True(t, ok)
		return int64(m.Sum().DataPoints().At(0).StartTimestamp())
	}
	first := start(h.scrape(t))
	es.set([]byte("# TYPE g gauge\ng 7\n"))
	h.scrape(t)
	es.set([]byte(counterBody))
	assert.Equal(t, first, start(h.scrape(t)))
	assert.Zero(t, h.logCount("went back to zero"))
}

func TestGaugesKeepLabelsNamedLikeBucketLabels(t *testing.T) {
	md := ExpositionToMetrics([]byte("# TYPE lat gauge\nlat{quantile=\"0.5\"} 1\nlat{quantile=\"0.9\"} 2\n"), time.Now())
	m, ok := metricByName(md, "lat")
	require.True(t, ok)
	require.Equal(t, 2, m.Gauge().DataPoints().Len())
	q, _ := m.Gauge().DataPoints().At(1).Attributes().Get("quantile")
	assert.Equal(t, "0.9", q.Str())
}

func TestMalformedHistogramsAndSummaries(t *testing.T) {
	body := "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3\n" +
		"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 4\n" +
		"# TYPE ok gauge\nok 1\n"
	es := newEngineServer(t, []byte(body))
	h := newHarness(t, es.URL)
	md := h.scrape(t)
	for _, name := range []string{"h", "s"} {
		_, ok := metricByName(md, name)
		assert.False(t, ok, name)
	}
	assert.Equal(t, 1.0, gaugeValue(t, md, "ok"))
	assert.Equal(t, 2, h.logCount("Dropped a malformed series"))
}

func TestIPv6Instance(t *testing.T) {
	tg, err := newTarget("http://[::1]:8000", "/metrics")
	require.NoError(t, err)
	assert.Equal(t, "[::1]:8000", tg.instance)
	_, _, err = net.SplitHostPort(tg.instance)
	assert.NoError(t, err)
}
