package tensorrtllmreceiver

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap/zapcore"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/processor/llmnormalizeprocessor"
)

// iterations reads a recorded /metrics response generically, as an oracle independent of the receiver's
// own decoding.
func iterations(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var its []map[string]any
	require.NoError(t, json.Unmarshal(body, &its))
	require.NotEmpty(t, its)
	return its
}

func field(it map[string]any, path ...string) (float64, bool) {
	var v any = it
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, false
		}
		if v, ok = m[p]; !ok {
			return 0, false
		}
	}
	f, ok := v.(float64)
	return f, ok
}

// latest is the value of the last iteration that has the key.
func latest(t *testing.T, its []map[string]any, path ...string) float64 {
	t.Helper()
	for i := len(its) - 1; i >= 0; i-- {
		if v, ok := field(its[i], path...); ok {
			return v
		}
	}
	t.Fatalf("no iteration has %v", path)
	return 0
}

func total(its []map[string]any, path ...string) float64 {
	var sum float64
	for _, it := range its {
		v, _ := field(it, path...)
		sum += v
	}
	return sum
}

// body writes iterations back as a /metrics response.
func body(t *testing.T, its []map[string]any) []byte {
	b, err := json.Marshal(its)
	require.NoError(t, err)
	return b
}

func only(v float64) map[string]float64 { return map[string]float64{"": v} }

// trtllm-serve without return_perf_metrics serves no /prometheus/metrics but still its iteration stats:
// they become canonical metrics, gauges from the latest iteration, counts summed over the iterations read.
func TestIterationStatsWithoutPrometheusEndpoint(t *testing.T) {
	raw := testdata(t, "iteration_stats_2026.json")
	its := iterations(t, raw)
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/prometheus/metrics", route{})
	srv.Set("/metrics", route{Body: raw})
	r := newRig(t, srv.URL)
	md := r.Scrape(t, 1)

	assert.Equal(t, only(0), enginescrapetest.Gauges(md, schema.MetricLLMEngineUp), "up reports the Prometheus endpoint")
	assert.Equal(t, only(1), enginescrapetest.Gauges(md, schema.MetricLLMEngineReady))
	for name, want := range map[string]float64{
		schema.MetricLLMSchedulerRequestsRunning:         latest(t, its, "numActiveRequests"),
		schema.MetricLLMSchedulerRequestsWaiting:         latest(t, its, "numQueuedRequests"),
		schema.MetricLLMSchedulerRequestsMaxRunning:      latest(t, its, "maxNumActiveRequests"),
		schema.MetricLLMEngineIterationDuration:          latest(t, its, "iterLatencyMS") / 1000,
		schema.MetricLLMSchedulerBatchRequests:           latest(t, its, "inflightBatchingStats", "numScheduledRequests"),
		schema.MetricLLMSchedulerBatchContextRequests:    latest(t, its, "inflightBatchingStats", "numContextRequests"),
		schema.MetricLLMSchedulerBatchGenerationRequests: latest(t, its, "inflightBatchingStats", "numGenRequests"),
		schema.MetricLLMSchedulerBatchContextTokens:      latest(t, its, "inflightBatchingStats", "numCtxTokens"),
		schema.MetricLLMSchedulerRequestsPaused:          latest(t, its, "inflightBatchingStats", "numPausedRequests"),
		schema.MetricLLMKVCacheBlocksUsed:                latest(t, its, "kvCacheStats", "usedNumBlocks"),
		schema.MetricLLMKVCacheBlocksFree:                latest(t, its, "kvCacheStats", "freeNumBlocks"),
		schema.MetricLLMKVCacheBlocksTotal:               latest(t, its, "kvCacheStats", "maxNumBlocks"),
		schema.MetricLLMKVCacheBlockSize:                 latest(t, its, "kvCacheStats", "tokensPerBlock"),
		schema.MetricLLMKVCacheUtilization:               latest(t, its, "kvCacheStats", "usedNumBlocks") / latest(t, its, "kvCacheStats", "maxNumBlocks"),
		schema.MetricLLMPrefixCacheHitRatio:              latest(t, its, "kvCacheStats", "cacheHitRate"),
		schema.MetricLLMSpecDecodeAcceptLength:           latest(t, its, "specDecodingStats", "acceptanceLength"),
	} {
		assert.InDeltaMapValues(t, only(want), enginescrapetest.Gauges(md, name), 1e-12, name)
	}
	var queued float64
	for _, it := range its {
		latency, _ := field(it, "newActiveRequestsQueueLatencyMS")
		n, _ := field(it, "numNewActiveRequests")
		queued += latency / 1000 * n
	}
	for name, want := range map[string]float64{
		schema.MetricLLMRequestsFinished:         total(its, "numCompletedRequests"),
		schema.MetricLLMRequestsStarted:          total(its, "numNewActiveRequests"),
		schema.MetricLLMRequestsQueueDuration:    queued,
		schema.MetricLLMSpecDecodeDraftTokens:    total(its, "specDecodingStats", "numDraftTokens"),
		schema.MetricLLMSpecDecodeAcceptedTokens: total(its, "specDecodingStats", "numAcceptedTokens"),
		schema.MetricLLMEngineIterations:         latest(t, its, "iter"),
		schema.MetricLLMKVCacheBlocksReused:      latest(t, its, "kvCacheStats", "reusedBlocks"),
		schema.MetricLLMKVCacheBlocksMissed:      latest(t, its, "kvCacheStats", "missedBlocks"),
	} {
		assert.InDeltaMapValues(t, only(want), enginescrapetest.Sums(md, name), 1e-12, name)
	}
	for _, m := range md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().All() {
		if def := mustSchema(t).Metric(m.Name()); def != nil {
			assert.Equal(t, def.Unit, m.Unit(), m.Name())
		}
	}
	assert.Equal(t, 1, r.Warnings(), "only the missing Prometheus endpoint")
}

func mustSchema(t *testing.T) *schema.Schema {
	s, err := schema.Default()
	require.NoError(t, err)
	return s
}

func TestIterationStatsOfStaticBatching(t *testing.T) {
	raw := testdata(t, "iteration_stats_static_2026.json")
	its := iterations(t, raw)
	srv := newServer(t, "prometheus_metrics_rc.txt")
	srv.Set("/metrics", route{Body: raw})
	md := newRig(t, srv.URL).Scrape(t, 1)
	assert.Equal(t, only(latest(t, its, "staticBatchingStats", "numGenTokens")), enginescrapetest.Gauges(md, schema.MetricLLMSchedulerBatchGenerationTokens))
	assert.Equal(t, only(latest(t, its, "staticBatchingStats", "numScheduledRequests")), enginescrapetest.Gauges(md, schema.MetricLLMSchedulerBatchRequests))
}

// /metrics drains on read: each scrape sees only the iterations since the previous one. Counts keep adding
// up across scrapes from one start time, and an idle engine (no new iteration) keeps its last gauges.
func TestIterationStatsAccumulateAcrossDrains(t *testing.T) {
	its := iterations(t, testdata(t, "iteration_stats_2026.json"))
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/prometheus/metrics", route{})
	r := newRig(t, srv.URL)

	srv.Set("/metrics", route{Body: body(t, its[:2])})
	first := r.Scrape(t, 1)
	srv.Set("/metrics", route{Body: body(t, its[2:])})
	r.Scrape(t, 1)
	srv.Set("/metrics", route{Body: []byte(`[]`)})
	last := r.Scrape(t, 1)

	assert.Equal(t, only(total(its, "numCompletedRequests")), enginescrapetest.Sums(last, schema.MetricLLMRequestsFinished))
	assert.Equal(t, only(total(its, "numNewActiveRequests")), enginescrapetest.Sums(last, schema.MetricLLMRequestsStarted))
	assert.Equal(t, only(latest(t, its, "numActiveRequests")), enginescrapetest.Gauges(last, schema.MetricLLMSchedulerRequestsRunning))
	assert.Equal(t, finishedStart(t, first), finishedStart(t, last), "one cumulative series")
	assert.Zero(t, r.Logs.FilterMessageSnippet("went missing").Len(), "consecutive iterations: no gap")
}

// finishedStart is the start time of the finished-requests counter, the one series these tests follow.
func finishedStart(t *testing.T, md pmetric.Metrics) pcommon.Timestamp {
	t.Helper()
	name := schema.MetricLLMRequestsFinished
	for _, m := range md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().All() {
		if m.Name() == name && m.Type() == pmetric.MetricTypeSum && m.Sum().DataPoints().Len() == 1 {
			return m.Sum().DataPoints().At(0).StartTimestamp()
		}
	}
	t.Fatalf("no single-point sum %s", name)
	return 0
}

// When trtllm-serve also serves /prometheus/metrics, a canonical name its families provide comes from there
// alone; the iteration stats add only what the Prometheus endpoint lacks. After llm_normalize every
// canonical name appears once.
func TestPrometheusEndpointWinsOverIterationStats(t *testing.T) {
	prom := testdata(t, "prometheus_metrics_2026.txt")
	its := iterations(t, testdata(t, "iteration_stats_2026.json"))
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/metrics", route{Body: body(t, its)})
	r := newRig(t, srv.URL)
	md := r.Scrape(t, 1)

	assert.Empty(t, enginescrapetest.Gauges(md, schema.MetricLLMSchedulerRequestsRunning), "trtllm_num_requests_running provides it")
	assert.Empty(t, enginescrapetest.Sums(md, schema.MetricLLMRequestsFinished), "trtllm_request_success_total provides it")
	assert.Equal(t, only(latest(t, its, "inflightBatchingStats", "numContextRequests")),
		enginescrapetest.Gauges(md, schema.MetricLLMSchedulerBatchContextRequests), "the Prometheus capture has no trtllm_num_context_requests")
	assert.NotEmpty(t, enginescrapetest.Sums(md, schema.MetricLLMRequestsQueueDuration))

	sink := new(consumertest.MetricsSink)
	f := llmnormalizeprocessor.NewFactory()
	p, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, p.ConsumeMetrics(context.Background(), md))
	names := map[string]int{}
	var running pmetric.Metric
	for _, m := range sink.AllMetrics()[0].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().All() {
		names[m.Name()]++
		if m.Name() == schema.MetricLLMSchedulerRequestsRunning {
			running = m
		}
	}
	for name, n := range names {
		assert.Equal(t, 1, n, "%s appears once", name)
	}
	want := fixtures.Samples(prom, "trtllm_num_requests_running")
	require.Len(t, want, 1)
	assert.Equal(t, want[0].Value, running.Gauge().DataPoints().At(0).DoubleValue(), "the Prometheus value, not the iteration stats'")
}

// The iteration counter going back is an engine restart: one line, and the summed counters start again.
func TestIterationStatsAfterEngineRestart(t *testing.T) {
	its := iterations(t, testdata(t, "iteration_stats_2026.json"))
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/prometheus/metrics", route{})
	srv.Set("/metrics", route{Body: body(t, its)})
	r := newRig(t, srv.URL)
	before := r.Scrape(t, 1)

	restarted := []map[string]any{{"iter": 1.0, "numCompletedRequests": 2.0, "numActiveRequests": 1.0}, {"iter": 2.0, "numCompletedRequests": 1.0}}
	srv.Set("/metrics", route{Body: body(t, restarted)})
	after := r.Scrape(t, 1)
	srv.Set("/metrics", route{Body: []byte(`[]`)})
	r.Scrape(t, 2)

	assert.Equal(t, only(total(restarted, "numCompletedRequests")), enginescrapetest.Sums(after, schema.MetricLLMRequestsFinished))
	assert.Greater(t, finishedStart(t, after), finishedStart(t, before))
	assert.Equal(t, only(latest(t, restarted, "iter")), enginescrapetest.Sums(after, schema.MetricLLMEngineIterations))
	assert.Equal(t, 1, r.Logs.FilterMessageSnippet("went back").Len())
	assert.Equal(t, 1, r.Warnings(), "only the missing Prometheus endpoint")
}

// Iterations that never reach the receiver (another consumer, or an overflowing engine buffer) are said
// once per episode; the ones that do arrive still count.
func TestIterationStatsGapIsReportedOnce(t *testing.T) {
	srv := newServer(t, "prometheus_metrics_2026.txt")
	r := newRig(t, srv.URL)
	read := func(iter float64) pmetric.Metrics {
		srv.Set("/metrics", route{Body: body(t, []map[string]any{{"iter": iter, "numCompletedRequests": 1.0}})})
		return r.Scrape(t, 1)
	}
	gaps := func() []map[string]any {
		var out []map[string]any
		for _, e := range r.Logs.FilterMessageSnippet("went missing").All() {
			out = append(out, e.ContextMap())
		}
		return out
	}
	read(41)
	read(45)
	require.Len(t, gaps(), 1)
	assert.EqualValues(t, 45-41-1, gaps()[0]["missing_iterations"])
	read(46)
	read(47)
	assert.Len(t, gaps(), 1, "no new gap")
	read(50)
	assert.Len(t, gaps(), 2, "a new episode")
	md := read(51)
	assert.Equal(t, only(latest(t, []map[string]any{{"iter": 51.0}}, "iter")), enginescrapetest.Sums(md, schema.MetricLLMEngineIterations))
}

// Bad input: one clear warning per problem, the named field, and nothing else lost.
func TestIterationStatsBadInput(t *testing.T) {
	its := iterations(t, testdata(t, "iteration_stats_2026.json"))
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/prometheus/metrics", route{})
	srv.Set("/metrics", route{Body: body(t, its)})
	r := newRig(t, srv.URL)
	r.Scrape(t, 1)
	finished := total(its, "numCompletedRequests")

	t.Run("not an array", func(t *testing.T) {
		srv.Set("/metrics", route{Body: []byte(`{"detail": "Not Found"}`)})
		md := r.Scrape(t, 3)
		assert.Equal(t, only(finished), enginescrapetest.Sums(md, schema.MetricLLMRequestsFinished), "the totals so far are kept")
		assert.Equal(t, only(latest(t, its, "numActiveRequests")), enginescrapetest.Gauges(md, schema.MetricLLMSchedulerRequestsRunning))
		assert.Equal(t, 1, r.Logs.FilterMessageSnippet("could not be read").Len())
	})
	t.Run("a field of the wrong type", func(t *testing.T) {
		srv.Set("/metrics", route{Body: []byte(`[]`)}) // the previous problem clears
		r.Scrape(t, 1)
		bad := []byte(`[{"iter": 44, "numActiveRequests": 9, "numCompletedRequests": 1, "kvCacheStats": {"usedNumBlocks": "many", "maxNumBlocks": 100}}]`)
		srv.Set("/metrics", route{Body: bad})
		md := r.Scrape(t, 1)
		warnings := r.Logs.FilterMessageSnippet("could not be read").All()
		require.Len(t, warnings, 2, "a new problem after the first cleared")
		assert.Contains(t, warnings[1].ContextMap()["error"], "usedNumBlocks")
		assert.Equal(t, only(9), enginescrapetest.Gauges(md, schema.MetricLLMSchedulerRequestsRunning), "the other fields of that iteration count")
		assert.Equal(t, only(finished+1), enginescrapetest.Sums(md, schema.MetricLLMRequestsFinished))
	})
	t.Run("elements that are not iterations", func(t *testing.T) {
		srv.Set("/metrics", route{Body: []byte(`[3, {"iter": 45, "numCompletedRequests": 1}]`)})
		md := r.Scrape(t, 1)
		assert.Equal(t, only(finished+2), enginescrapetest.Sums(md, schema.MetricLLMRequestsFinished))
	})
	t.Run("missing keys are not errors", func(t *testing.T) {
		before := r.Logs.FilterLevelExact(zapcore.WarnLevel).Len()
		srv.Set("/metrics", route{Body: []byte(`[{"iter": 46}]`)})
		md := r.Scrape(t, 2)
		assert.Equal(t, only(46), enginescrapetest.Sums(md, schema.MetricLLMEngineIterations))
		assert.Equal(t, before, r.Logs.FilterLevelExact(zapcore.WarnLevel).Len())
	})
}

func TestIterationStatsNeverEnabled(t *testing.T) {
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/metrics", route{Body: []byte(`[]`)})
	r := newRig(t, srv.URL)
	md := r.Scrape(t, 4)
	assert.Equal(t, 1, r.Logs.FilterMessageSnippet("enable_iter_perf_stats").Len())
	assert.Empty(t, enginescrapetest.Sums(md, schema.MetricLLMRequestsStarted), "no iteration, no count")
}

// Every parser of engine responses has a fuzz target: whatever arrives, no panic, and a second read of the
// same state works too.
func FuzzIterationStats(f *testing.F) {
	for _, name := range []string{"iteration_stats_2026.json", "iteration_stats_static_2026.json"} {
		f.Add(testdata(f, name))
	}
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"iter": 3}, {"iter": 1}, {"iter": 9, "kvCacheStats": {"maxNumBlocks": 0, "usedNumBlocks": 1}}]`))
	f.Fuzz(func(_ *testing.T, b []byte) {
		read := newIterationReader()
		for range 2 {
			_ = read(b, enginescrape.NewStateOutputForTest(pmetric.NewMetrics().ResourceMetrics().AppendEmpty()))
		}
	})
}
