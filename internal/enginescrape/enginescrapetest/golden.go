package enginescrapetest

import (
	"context"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/golden"
	"github.com/servescope/servescope/internal/schema"
)

// GoldenScrapeTime stands for the scrape's wall-clock time in golden files: 2030-01-01T00:00:00Z, later
// than every time a capture carries itself (its _created series), so a start never follows its point.
var GoldenScrapeTime = pcommon.NewTimestampFromTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))

// GoldenPort stands for the test server's port, which the system picks anew each run.
const GoldenPort = 0

// FirstScrape builds the receiver through its factory with cfg, pointed at srv, waits for the scraper
// controller's first batch and shuts the receiver down: what a collector emits on its first scrape of that
// server. What differs between runs is replaced, after checking it is what it should be: the scrape's
// wall-clock time (the time of llm.engine.up, and every point stamped with it) becomes GoldenScrapeTime, and
// srv's port becomes GoldenPort in server.port and service.instance.id. Every other time, the capture's
// own, is left as it is. scrape is cfg's engine-scrape settings: cfg itself, or what it embeds.
func FirstScrape(t *testing.T, f receiver.Factory, cfg component.Config, scrape *enginescrape.Config, srv *Server) pmetric.Metrics {
	t.Helper()
	scrape.Endpoint = srv.URL
	scrape.CollectionInterval = time.Hour // one scrape in the test's lifetime
	scrape.InitialDelay = 0
	require.NoError(t, componenttest.CheckConfigStruct(cfg))
	sink := new(consumertest.MetricsSink)
	rcv, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return len(sink.AllMetrics()) >= 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, rcv.Shutdown(context.Background()))
	batches := sink.AllMetrics()
	require.Len(t, batches, 1, "one scrape within the collection interval")
	md := batches[0]

	var wall pcommon.Timestamp
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				if ms.At(k).Name() == schema.MetricLLMEngineUp {
					wall = ms.At(k).Gauge().DataPoints().At(0).Timestamp()
				}
			}
		}
	}
	require.NotZero(t, wall, "every scrape ends with %s, stamped with the scrape's time", schema.MetricLLMEngineUp)
	require.WithinDuration(t, time.Now(), wall.AsTime(), time.Minute, "the scrape's time is the wall clock's")
	golden.FixClock(md, wall, GoldenScrapeTime)

	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	for i := 0; i < rms.Len(); i++ {
		attrs := rms.At(i).Resource().Attributes()
		got, ok := attrs.Get(schema.AttrServerPort)
		require.True(t, ok, "%s missing", schema.AttrServerPort)
		require.EqualValues(t, port, got.Int())
		attrs.PutInt(schema.AttrServerPort, GoldenPort)
		got, ok = attrs.Get(schema.AttrServiceInstanceID)
		require.True(t, ok, "%s missing", schema.AttrServiceInstanceID)
		require.Equal(t, u.Host, got.Str())
		attrs.PutStr(schema.AttrServiceInstanceID, u.Hostname()+":"+strconv.Itoa(GoldenPort))
	}
	return md
}

// GoldenFile is the expected output of a case in the calling package: testdata/<name>/expected.yaml.
func GoldenFile(name string) string { return filepath.Join("testdata", name, "expected.yaml") }
