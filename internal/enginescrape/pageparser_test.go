package enginescrape

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/promtext"
	"github.com/servescope/servescope/internal/schema"
)

// equalsPage reads a made-up page of `name=value` lines, one gauge each, as an engine's own parser would;
// it records the sample limit the scraper gave it.
func equalsPage(limits *[]int) PageParser {
	return func(body []byte, maxSamples int) promtext.Result {
		*limits = append(*limits, maxSamples)
		var r promtext.Result
		for i, line := range bytes.Split(body, []byte("\n")) {
			name, value, ok := bytes.Cut(line, []byte("="))
			v, err := strconv.ParseFloat(string(value), 64)
			if !ok || err != nil {
				r.ErrorCount++
				r.Errors = append(r.Errors, promtext.LineError{Line: i + 1, Reason: "not name=value", Text: string(line)})
				continue
			}
			sample := promtext.Sample{Name: string(name), Value: v}
			r.Families = append(r.Families, &promtext.Family{Name: sample.Name, Type: promtext.TypeGauge, Samples: []promtext.Sample{sample}})
			r.Samples++
		}
		return r
	}
}

// An engine that supplies its own page parser gets the shared scrape: its series, llm.engine.up, one
// warning for lines it could not read, and up 0 with one warning for a page it reads nothing from.
func TestEngineOwnPageParser(t *testing.T) {
	var limits []int
	es := newEngineServer(t, []byte("queue=3\nbroken\nbusy=0.5"))
	cfg := NewDefaultConfig(es.URL, "/metrics")
	cfg.SampleLimit = 77
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(component.MustNewType("vllm"))
	set.Logger = zap.New(core)
	s, err := NewScraper(&cfg, Engine{Receiver: StandInReceiver, Name: schema.EngineVLLM, ParsePage: equalsPage(&limits)}, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, s.Shutdown(context.Background())) })

	for range 2 {
		md, err := s.Scrape(context.Background())
		require.NoError(t, err)
		up, ok := metricByName(md, schema.MetricLLMEngineUp)
		require.True(t, ok)
		assert.Equal(t, int64(1), up.Gauge().DataPoints().At(0).IntValue())
		queue, ok := metricByName(md, "queue")
		require.True(t, ok, "the engine parser's series arrive")
		assert.Equal(t, 3.0, queue.Gauge().DataPoints().At(0).DoubleValue())
	}
	assert.Equal(t, []int{77, 77}, limits, "the parser is given sample_limit")
	assert.Equal(t, 1, logs.FilterMessageSnippet("unparseable lines").Len())

	es.set([]byte("<html>"))
	md, err := s.Scrape(context.Background())
	require.NoError(t, err)
	up, _ := metricByName(md, schema.MetricLLMEngineUp)
	assert.Equal(t, int64(0), up.Gauge().DataPoints().At(0).IntValue())
	assert.Equal(t, 1, logs.FilterMessageSnippet("no Prometheus series").Len())
}

func TestPageToMetricsUsesTheParser(t *testing.T) {
	var limits []int
	md := PageToMetrics(equalsPage(&limits), []byte("queue=3"), time.Unix(1700000000, 0))
	m, ok := metricByName(md, "queue")
	require.True(t, ok)
	assert.Equal(t, 3.0, m.Gauge().DataPoints().At(0).DoubleValue())
}
