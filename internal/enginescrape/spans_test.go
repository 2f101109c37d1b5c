package enginescrape_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
)

// oneSpanPerRecord is a span source that reads /records and appends one span per byte of the answer.
var oneSpanPerRecord = &enginescrape.SpanSource{Name: "records", New: func() enginescrape.SpanPoller {
	return func(ctx context.Context, p *enginescrape.SpanPoll) error {
		body, err := p.Get(ctx, "/records", 0)
		if err != nil {
			return err
		}
		for range body {
			p.AppendSpan().SetName("record")
		}
		return nil
	}
}}

// Only an engine with a span source gets a traces signal.
func TestFactoryOffersTracesOnlyWithASpanSource(t *testing.T) {
	without := enginescrape.NewReceiverFactory("http://localhost:1", enginescrape.Engine{Name: schema.EngineVLLM, Receiver: enginescrape.StandInReceiver})
	assert.Equal(t, component.StabilityLevelUndefined, without.TracesStability())
	with := enginescrape.NewReceiverFactory("http://localhost:1", enginescrape.Engine{Name: schema.EngineVLLM, Receiver: enginescrape.StandInReceiver, Spans: oneSpanPerRecord})
	assert.Equal(t, enginescrape.StandInReceiver.Type, with.Type())
	assert.Equal(t, component.StabilityLevelBeta, with.TracesStability(), "the receiver's own, from its metadata")
	assert.Equal(t, component.StabilityLevelAlpha, with.MetricsStability())
}

// Spans carry the replica's resource; an engine that stops answering is one warning, and the version is
// read again when it comes back.
func TestSpanScraperPolls(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/records": {Body: []byte("abc")}, "/version": {Body: []byte(`{"version":"9"}`)}})
	engine := enginescrape.Engine{Receiver: enginescrape.StandInReceiver, Name: schema.EngineVLLM, VersionPath: "/version", ParseVersion: enginescrape.ParseVersionField, Spans: oneSpanPerRecord}
	cfg := enginescrape.NewDefaultConfig(srv.URL, "/metrics")
	r := enginescrapetest.NewSpanRig(t, component.MustNewType("engine"), &cfg, engine, srv.URL)
	td := r.Poll(1)
	assert.Equal(t, 3, td.SpanCount())
	assert.Equal(t, "9", td.ResourceSpans().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineVersion])

	srv.Set("/records", enginescrapetest.Route{})
	assert.Zero(t, r.Poll(3).SpanCount())
	assert.Equal(t, 1, r.Warnings())
	srv.Set("/records", enginescrapetest.Route{Body: []byte("d")})
	assert.Equal(t, 1, r.Poll(1).SpanCount())
}

// Spans the pipeline refuses are lost (the engine forgot them when it answered): said once per episode.
func TestRefusedSpansAreReportedOnce(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/records": {Body: []byte("ab")}})
	f := enginescrape.NewReceiverFactory(srv.URL, enginescrape.Engine{Name: schema.EngineVLLM, Receiver: enginescrape.StandInReceiver, Spans: oneSpanPerRecord})
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	cfg.CollectionInterval = 20 * time.Millisecond
	cfg.InitialDelay = 0
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(f.Type())
	set.Logger = zap.New(core)
	rcv, err := f.CreateTraces(context.Background(), set, cfg, consumertest.NewErr(errors.New("memory limiter: refused")))
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, rcv.Shutdown(context.Background()))
	assert.Equal(t, 1, logs.FilterMessageSnippet("refused by the pipeline").Len())
}
