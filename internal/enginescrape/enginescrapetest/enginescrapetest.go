// Package enginescrapetest is what engine receivers' tests share: a stand-in engine HTTP server with
// settable routes, a scraper wired to an observed logger, and a compact view of the emitted gauges.
package enginescrapetest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/enginescrape"
)

// Route is one path's answer.
type Route struct {
	Status int // 0 means 200
	Body   []byte
	// BodyFunc, when set, computes the body at each request (an engine's clock).
	BodyFunc func() []byte
}

// Server is an engine stand-in; paths without a route answer 404, as an engine without that endpoint does.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]Route
}

// NewServer starts a server with the given routes, closed at the end of the test.
func NewServer(t testing.TB, routes map[string]Route) *Server {
	s := &Server{routes: routes}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		rt, ok := s.routes[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if rt.Status != 0 {
			w.WriteHeader(rt.Status)
		}
		if rt.BodyFunc != nil {
			_, _ = w.Write(rt.BodyFunc())
			return
		}
		_, _ = w.Write(rt.Body)
	}))
	t.Cleanup(s.Close)
	return s
}

// Set changes a path's answer; a nil body with status 0 removes the route.
func (s *Server) Set(path string, rt Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt.Status == 0 && rt.Body == nil && rt.BodyFunc == nil {
		delete(s.routes, path)
		return
	}
	s.routes[path] = rt
}

// Rig is a started scraper whose log lines the test can count.
type Rig struct {
	Scraper *enginescrape.Scraper
	Logs    *observer.ObservedLogs
}

// NewRig starts a scraper for endpoint with the receiver type's default configuration.
func NewRig(t testing.TB, typ component.Type, cfg *enginescrape.Config, engine enginescrape.Engine, endpoint string) *Rig {
	cfg.Endpoint = endpoint
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(typ)
	set.Logger = zap.New(core)
	s, err := enginescrape.NewScraper(cfg, engine, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return &Rig{Scraper: s, Logs: logs}
}

// SpanRig is a started span scraper whose log lines the test can count.
type SpanRig struct {
	Scraper *enginescrape.SpanScraper
	Logs    *observer.ObservedLogs
}

// NewSpanRig starts the span scraper of an engine with a span source, for endpoint.
func NewSpanRig(t testing.TB, typ component.Type, cfg *enginescrape.Config, engine enginescrape.Engine, endpoint string) *SpanRig {
	cfg.Endpoint = endpoint
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(typ)
	set.Logger = zap.New(core)
	s, err := enginescrape.NewSpanScraper(cfg, engine, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return &SpanRig{Scraper: s, Logs: logs}
}

// Poll runs n polls and returns the last one's spans.
func (r *SpanRig) Poll(n int) ptrace.Traces {
	var td ptrace.Traces
	for range n {
		td = r.Scraper.Poll(context.Background())
	}
	return td
}

// Warnings counts warning lines.
func (r *SpanRig) Warnings() int { return r.Logs.FilterLevelExact(zapcore.WarnLevel).Len() }

// Scrape runs n scrapes and returns the last one's metrics.
func (r *Rig) Scrape(t testing.TB, n int) pmetric.Metrics {
	var md pmetric.Metrics
	for range n {
		var err error
		md, err = r.Scraper.Scrape(context.Background())
		require.NoError(t, err, "engine problems are data, never a scrape error")
	}
	return md
}

// Warnings counts warning lines.
func (r *Rig) Warnings() int { return r.Logs.FilterLevelExact(zapcore.WarnLevel).Len() }

// Gauges returns a gauge's data points keyed by their attributes as "k=v;" in order ("" for none).
func Gauges(md pmetric.Metrics, name string) map[string]float64 {
	return numbers(md, name, pmetric.MetricTypeGauge)
}

// Sums returns a sum's data points keyed like Gauges.
func Sums(md pmetric.Metrics, name string) map[string]float64 {
	return numbers(md, name, pmetric.MetricTypeSum)
}

func numbers(md pmetric.Metrics, name string, typ pmetric.MetricType) map[string]float64 {
	out := map[string]float64{}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := 0; i < ms.Len(); i++ {
		m := ms.At(i)
		if m.Name() != name || m.Type() != typ {
			continue
		}
		var dps pmetric.NumberDataPointSlice
		if typ == pmetric.MetricTypeSum {
			dps = m.Sum().DataPoints()
		} else {
			dps = m.Gauge().DataPoints()
		}
		for _, dp := range dps.All() {
			key := ""
			for k, v := range dp.Attributes().All() {
				key += k + "=" + v.AsString() + ";"
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

// CheckLifecycle builds the receiver through its factory, lets the scraper controller deliver two scrapes
// of endpoint, and shuts it down: the path a collector takes.
func CheckLifecycle(t *testing.T, f receiver.Factory, endpoint string) []pmetric.Metrics {
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	cfg.Endpoint = endpoint
	cfg.CollectionInterval = 50 * time.Millisecond
	cfg.InitialDelay = 0
	require.NoError(t, componenttest.CheckConfigStruct(cfg))
	sink := new(consumertest.MetricsSink)
	rcv, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return len(sink.AllMetrics()) >= 2 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, rcv.Shutdown(context.Background()))
	return sink.AllMetrics()
}

// Testdata reads a file from the calling package's testdata folder.
func Testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// ScrapeUnreachable runs one scrape of an endpoint nobody listens on, with the receiver's engine and set's
// telemetry. It returns the endpoint's service.instance.id and the scrape's metrics: a receiver's test then
// finds the failure in the self-telemetry its metadata.yaml declares, and its scope name on the metrics.
func ScrapeUnreachable(t testing.TB, set receiver.Settings, cfg *enginescrape.Config, engine enginescrape.Engine) (string, pmetric.Metrics) {
	t.Helper()
	cfg.Endpoint = "http://127.0.0.1:1"
	require.NoError(t, cfg.Validate())
	s, err := enginescrape.NewScraper(cfg, engine, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	md, err := s.Scrape(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"": 0}, Gauges(md, "llm.engine.up"), "nothing answers there")
	return "127.0.0.1:1", md
}
