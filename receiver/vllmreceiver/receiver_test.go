package vllmreceiver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/vllmreceiver/internal/metadata"
)

// The receiver, built by its factory, scrapes a vLLM-shaped server on its interval and stamps the replica.
func TestReceiverScrapesOnInterval(t *testing.T) {
	body := fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write(body)
		case "/version":
			_, _ = w.Write([]byte(`{"version":"0.11.2"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	cfg.Endpoint = srv.URL
	cfg.CollectionInterval = 50 * time.Millisecond
	cfg.InitialDelay = 0
	sink := new(consumertest.MetricsSink)
	r, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return len(sink.AllMetrics()) >= 2 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, r.Shutdown(context.Background()))

	md := sink.AllMetrics()[1]
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	engine, _ := res.Get(schema.AttrLLMEngineName)
	version, _ := res.Get(schema.AttrLLMEngineVersion)
	assert.Equal(t, "vllm", engine.Str())
	assert.Equal(t, "0.11.2", version.Str())
	names := map[string]pmetric.Metric{}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := 0; i < ms.Len(); i++ {
		names[ms.At(i).Name()] = ms.At(i)
	}
	assert.Contains(t, names, "vllm:num_requests_waiting", "vendor names pass through; llm_normalize maps them")
	assert.EqualValues(t, 1, names[schema.MetricLLMEngineUp].Gauge().DataPoints().At(0).IntValue())
}

func TestLifecycleWithoutEngine(t *testing.T) {
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	cfg.Endpoint = "http://127.0.0.1:1" // nothing listens; start and shutdown must still be clean
	r, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, r.Shutdown(context.Background()))
	require.NoError(t, componenttest.CheckConfigStruct(cfg))
}
