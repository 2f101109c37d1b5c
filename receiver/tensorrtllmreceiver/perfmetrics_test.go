package tensorrtllmreceiver

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/tensorrtllmreceiver/internal/metadata"
)

// bootedAgo is how long the fake engine's steady clock has run: its timestamps are wall time minus this.
const bootedAgo = 1_700_000_000.25

// steadyClock answers GET /steady_clock_offset as trtllm-serve does, from a steady clock that started
// bootedAgo seconds after the Unix epoch.
func steadyClock() []byte {
	now := float64(time.Now().UnixNano()) / 1e9
	return fmt.Appendf(nil, `{"receive_ts": %f, "transmit_ts": %f}`, now-bootedAgo, now-bootedAgo+0.0002)
}

func newSpanServer(t *testing.T, records []byte) *enginescrapetest.Server {
	return enginescrapetest.NewServer(t, map[string]route{
		"/perf_metrics":        {Body: records},
		"/steady_clock_offset": {BodyFunc: steadyClock},
		"/version":             {Body: []byte(`{"version":"1.2.0"}`)},
	})
}

func newSpanRig(t *testing.T, endpoint string) *enginescrapetest.SpanRig {
	return enginescrapetest.NewSpanRig(t, metadata.Type, NewFactory().CreateDefaultConfig().(*enginescrape.Config), engine, endpoint)
}

// spansByID returns the spans of td by their gen_ai.request.id.
func spansByID(t *testing.T, td ptrace.Traces) map[string]ptrace.Span {
	t.Helper()
	out := map[string]ptrace.Span{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				id, ok := sp.Attributes().Get("gen_ai.request.id")
				require.True(t, ok)
				out[id.Str()] = sp
			}
		}
	}
	return out
}

// timing reads a record's timing_metrics generically, as an oracle independent of the receiver's decoding.
func timing(rec map[string]any) map[string]float64 {
	out := map[string]float64{}
	tm, _ := rec["perf_metrics"].(map[string]any)["timing_metrics"].(map[string]any)
	for k, v := range tm {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out
}

func doubleAttr(sp ptrace.Span, key string) (float64, bool) {
	v, ok := sp.Attributes().Get(key)
	if !ok {
		return 0, false
	}
	return v.Double(), true
}

// Each record of /perf_metrics becomes one llm_request span in the shape the root-cause connector reads from
// vLLM: SERVER kind, from arrival to last token on the wall clock, the phases in seconds, the request id;
// with the receiver's resource attributes.
func TestPerfMetricsBecomeRequestSpans(t *testing.T) {
	raw := testdata(t, "perf_metrics_2026.json")
	var records []map[string]any
	require.NoError(t, json.Unmarshal(raw, &records))
	srv := newSpanServer(t, raw)
	r := newSpanRig(t, srv.URL)
	td := r.Poll(1)

	spans := spansByID(t, td)
	require.Len(t, spans, len(records))
	traceIDs := map[pcommon.TraceID]bool{}
	for _, rec := range records {
		id := strconv.FormatFloat(rec["request_id"].(float64), 'f', -1, 64)
		sp, ok := spans[id]
		require.True(t, ok, "record %s", id)
		tm := timing(rec)
		assert.Equal(t, "llm_request", sp.Name())
		assert.Equal(t, ptrace.SpanKindServer, sp.Kind())
		assert.False(t, sp.TraceID().IsEmpty())
		assert.False(t, sp.SpanID().IsEmpty())
		traceIDs[sp.TraceID()] = true

		wantStart := time.Unix(0, int64((tm["arrival_time"]+bootedAgo)*1e9))
		assert.WithinDuration(t, wantStart, sp.StartTimestamp().AsTime(), 50*time.Millisecond, "the engine's clock, placed on the wall clock")
		assert.InDelta(t, tm["last_token_time"]-tm["arrival_time"], sp.EndTimestamp().AsTime().Sub(sp.StartTimestamp().AsTime()).Seconds(), 1e-6)

		for key, want := range map[string]float64{
			"gen_ai.latency.e2e":                     tm["last_token_time"] - tm["arrival_time"],
			"gen_ai.latency.time_in_queue":           tm["first_scheduled_time"] - tm["arrival_time"],
			"gen_ai.latency.time_to_first_token":     tm["first_token_time"] - tm["arrival_time"],
			"gen_ai.latency.time_in_model_prefill":   tm["first_token_time"] - tm["first_scheduled_time"],
			"gen_ai.latency.time_in_model_decode":    tm["last_token_time"] - tm["first_token_time"],
			"gen_ai.latency.time_in_model_inference": tm["last_token_time"] - tm["first_scheduled_time"],
		} {
			got, ok := doubleAttr(sp, key)
			require.True(t, ok, "%s on %s", key, id)
			assert.InDelta(t, want, got, 1e-9, "%s on %s", key, id)
		}
		transfer, ok := doubleAttr(sp, "gen_ai.latency.kv_cache_transfer_time")
		if start, has := tm["kv_cache_transfer_start"]; has {
			require.True(t, ok)
			assert.InDelta(t, tm["kv_cache_transfer_end"]-start, transfer, 1e-9)
		} else {
			assert.False(t, ok, "no transfer, no attribute")
		}
		for _, key := range []string{"gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens"} {
			_, has := sp.Attributes().Get(key)
			assert.False(t, has, "%s: the records carry no token counts, and none is invented", key)
		}
	}
	assert.Len(t, traceIDs, len(records), "a fresh trace per request")

	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(u.Host)
	require.NoError(t, err)
	portNumber, err := strconv.Atoi(port)
	require.NoError(t, err)
	res := td.ResourceSpans().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, map[string]any{
		schema.AttrLLMEngineName: schema.EngineTensorrtLLM, schema.AttrLLMEngineVersion: "1.2.0",
		schema.AttrServiceInstanceID: u.Host, schema.AttrServerAddress: host, schema.AttrServerPort: int64(portNumber),
	}, res, "the same resource as the receiver's metrics")
	assert.Zero(t, r.Warnings())

	// /perf_metrics drains on read: the next poll has nothing new.
	srv.Set("/perf_metrics", route{Body: []byte(`[]`)})
	assert.Zero(t, r.Poll(1).SpanCount())
	assert.Zero(t, r.Warnings(), "records were seen: an empty answer is an idle engine")
}

// The metrics resource of the same receiver, for comparison with the spans': identical attributes.
func TestSpansAndMetricsShareTheResource(t *testing.T) {
	srv := newServer(t, "prometheus_metrics_2026.txt")
	srv.Set("/perf_metrics", route{Body: testdata(t, "perf_metrics_2026.json")})
	srv.Set("/steady_clock_offset", route{BodyFunc: steadyClock})
	md := newRig(t, srv.URL).Scrape(t, 1)
	td := newSpanRig(t, srv.URL).Poll(1)
	require.NotZero(t, td.SpanCount())
	assert.Equal(t, md.ResourceMetrics().At(0).Resource().Attributes().AsRaw(), td.ResourceSpans().At(0).Resource().Attributes().AsRaw())
}

// Missing keys: a phase without its times has no attribute; a record without its start or end is no span
// (one warning naming the key); the other records still count.
func TestPerfMetricsMissingKeys(t *testing.T) {
	records := []byte(`[
	  {"request_id": "cmpl-a", "perf_metrics": {"timing_metrics": {"arrival_time": 100.0, "first_scheduled_time": 100.5, "first_token_time": 0, "last_token_time": 103.0}}},
	  {"request_id": 2, "perf_metrics": {"timing_metrics": {"arrival_time": 100.0, "last_token_time": 101.0}}},
	  {"request_id": 3, "perf_metrics": {"timing_metrics": {"first_scheduled_time": 100.5, "last_token_time": 101.0}}},
	  {"request_id": 4}
	]`)
	srv := newSpanServer(t, records)
	r := newSpanRig(t, srv.URL)
	spans := spansByID(t, r.Poll(3))
	require.Len(t, spans, 2)

	a := spans["cmpl-a"]
	present := map[string]bool{}
	for k := range a.Attributes().All() {
		present[k] = true
	}
	assert.Equal(t, map[string]bool{
		"gen_ai.request.id": true, "gen_ai.latency.e2e": true, "gen_ai.latency.time_in_queue": true,
		"gen_ai.latency.time_in_model_inference": true,
	}, present, "first_token_time 0 is an unset time: no TTFT, prefill or decode")
	e2e, _ := doubleAttr(spans["2"], "gen_ai.latency.e2e")
	assert.InDelta(t, 1.0, e2e, 1e-12)
	_, hasQueue := doubleAttr(spans["2"], "gen_ai.latency.time_in_queue")
	assert.False(t, hasQueue)

	warnings := r.Logs.FilterMessageSnippet("cannot become a span").All()
	require.Len(t, warnings, 1, "once, over three polls")
	assert.Contains(t, warnings[0].ContextMap()["error"], "arrival_time")
}

// Without /steady_clock_offset the engine's steady-clock times cannot be placed: those records are dropped
// with one warning. Times already on the Unix clock need no offset.
func TestPerfMetricsClock(t *testing.T) {
	steady := testdata(t, "perf_metrics_2026.json")
	srv := newSpanServer(t, steady)
	srv.Set("/steady_clock_offset", route{})
	r := newSpanRig(t, srv.URL)
	assert.Zero(t, r.Poll(3).SpanCount())
	assert.Equal(t, 1, r.Logs.FilterMessageSnippet("cannot be placed in time").Len())

	arrival := float64(time.Now().Add(-time.Minute).Unix())
	srv.Set("/perf_metrics", route{Body: fmt.Appendf(nil, `[{"request_id": 1, "perf_metrics": {"timing_metrics": {"arrival_time": %f, "last_token_time": %f}}}]`, arrival, arrival+2)})
	td := r.Poll(1)
	require.Equal(t, 1, td.SpanCount())
	sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	assert.Equal(t, time.Unix(int64(arrival), 0).UnixNano(), sp.StartTimestamp().AsTime().UnixNano())
	assert.Equal(t, 2*time.Second, sp.EndTimestamp().AsTime().Sub(sp.StartTimestamp().AsTime()))
}

// Bad answers: one warning each until they clear, and what can be kept is kept.
func TestPerfMetricsBadInput(t *testing.T) {
	srv := newSpanServer(t, []byte(`<html>Internal Server Error</html>`))
	r := newSpanRig(t, srv.URL)
	assert.Zero(t, r.Poll(3).SpanCount())
	assert.Equal(t, 1, r.Logs.FilterMessageSnippet("could not be read").Len())

	srv.Set("/perf_metrics", route{Status: 404, Body: []byte(`{"detail":"Not Found"}`)})
	r.Poll(1) // a different problem: the same log key, still one line
	srv.Set("/perf_metrics", route{Body: []byte(`[]`)})
	r.Poll(1)
	srv.Set("/perf_metrics", route{Status: 404, Body: []byte(`{"detail":"Not Found"}`)})
	r.Poll(2)
	notServed := r.Logs.FilterMessageSnippet("could not be read").All()
	require.Len(t, notServed, 2)
	assert.Contains(t, notServed[1].ContextMap()["error"], "not served")

	srv.Set("/perf_metrics", route{Body: []byte(`[]`)})
	r.Poll(1)
	srv.Set("/perf_metrics", route{Body: []byte(`[{"request_id": 5, "perf_metrics": {"timing_metrics": {"arrival_time": "soon", "last_token_time": 101.0}}},
	  {"request_id": 6, "perf_metrics": {"timing_metrics": {"arrival_time": 100.0, "last_token_time": 101.0}}}, 7]`)})
	spans := spansByID(t, r.Poll(1))
	assert.Len(t, spans, 1, "record 6 counts")
	last := r.Logs.FilterMessageSnippet("could not be read").All()
	assert.Contains(t, last[len(last)-1].ContextMap()["error"], "arrival_time", "the field of the wrong type is named")
}

// The receiver's traces signal, built by the factory as a collector builds it: it polls /perf_metrics every
// collection_interval and delivers the spans.
func TestTracesReceiverLifecycle(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, component.StabilityLevelAlpha, f.TracesStability())
	srv := newSpanServer(t, testdata(t, "perf_metrics_2026.json"))
	cfg := f.CreateDefaultConfig().(*enginescrape.Config)
	cfg.Endpoint = srv.URL
	cfg.CollectionInterval = 50 * time.Millisecond
	cfg.InitialDelay = 0
	sink := new(consumertest.TracesSink)
	rcv, err := f.CreateTraces(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return sink.SpanCount() >= 3 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, rcv.Shutdown(context.Background()))
	assert.Equal(t, "llm_request", sink.AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name())
}

// Every parser of engine responses has a fuzz target: whatever /perf_metrics answers, no panic, and every
// span it makes ends after it starts.
func FuzzPerfMetrics(f *testing.F) {
	f.Add(testdata(f, "perf_metrics_2026.json"))
	f.Add([]byte(`[{"request_id": "x", "perf_metrics": {"timing_metrics": {"arrival_time": 1e300, "last_token_time": 1e301}}}]`))
	f.Add([]byte(`[{"perf_metrics": {"timing_metrics": {"arrival_time": -1, "last_token_time": 5}}}, null, []]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var raw []json.RawMessage
		if json.Unmarshal(b, &raw) != nil {
			return
		}
		records, _ := decode(raw)
		r := &perfReader{idGen: randomIDs, wallNow: time.Now, clock: engineClock{offset: bootedAgo, ok: true}}
		spans := ptrace.NewSpanSlice()
		r.convert(records, enginescrape.NewSpanPollForTest(spans))
		for _, sp := range spans.All() {
			if sp.EndTimestamp() < sp.StartTimestamp() {
				t.Fatalf("span ends before it starts: %v < %v", sp.EndTimestamp(), sp.StartTimestamp())
			}
		}
	})
}
