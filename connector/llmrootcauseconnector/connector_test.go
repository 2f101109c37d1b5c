package llmrootcauseconnector

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/configtest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/metricstest"
	"github.com/servescope/servescope/internal/schema"
)

const vllmCapture = "traces/stormlog_vllm_q05_spans_sample.jsonl"

func TestRealVLLMSpansPhasesAddUp(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 0 })
	td := fixtures.Spans(t, vllmCapture, map[string]string{"service.name": "vllm", schema.AttrServiceInstanceID: "localhost:8000"})
	requests := 0
	forEachSpan(td, func(_ pcommon.Map, s ptrace.Span) {
		if s.Name() == "llm_request" {
			requests++
		}
	})
	require.Positive(t, requests)
	r.send(td)

	out := r.traces.AllTraces()
	require.Len(t, out, 1)
	assert.Equal(t, td.SpanCount(), out[0].SpanCount(), "every span goes on, engine start-up spans too")
	explained := 0
	forEachSpan(out[0], func(_ pcommon.Map, s ptrace.Span) {
		a := s.Attributes().AsRaw()
		if s.Name() != "llm_request" {
			assert.NotContains(t, a, schema.AttrLLMRootCause, "%s is not a request span", s.Name())
			return
		}
		explained++
		sum := a[schema.AttrLLMLatencyQueue].(float64) + a[schema.AttrLLMLatencyPrefill].(float64) +
			a[schema.AttrLLMLatencyDecode].(float64) + a[schema.AttrLLMLatencyOther].(float64)
		assert.InDelta(t, a[schema.AttrLLMLatencyE2e], sum, 1e-9, "queue + prefill + decode + other = e2e")
		assert.InDelta(t, a[schema.AttrGenAILatencyE2e], a[schema.AttrLLMLatencyE2e], 1e-12, "vLLM's e2e is kept")
		assert.GreaterOrEqual(t, a[schema.AttrLLMLatencyOther].(float64), 0.0)
		assert.InDelta(t, a[schema.AttrGenAILatencyTimeInModelDecode].(float64)/float64(a[schema.AttrGenAIUsageCompletionTokens].(int64)-1),
			a[schema.AttrLLMLatencyTpot], 1e-12)
		assert.Equal(t, "unknown", a[schema.AttrLLMTenant], "no gateway span, no tenant key")
		assert.Equal(t, false, a[schema.AttrLLMSlow], "no SLO for this model and fewer requests than the baseline needs")
		assert.Equal(t, schema.RootCauseNone, a[schema.AttrLLMRootCause])
	})
	assert.Equal(t, requests, explained)
}

func TestSpansWaitForTheStateAfterTheirEnd(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = time.Hour })
	r.state(fleetstatetest.Engine("r1", testModel, 90, steady(90)))
	r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id = "r1", "early" })))
	assert.Empty(t, r.traces.AllTraces(), "the span ended at 102.6 s; the newest state is from 90 s")

	// The scrape after the span's end arrives: the span goes. That scrape closes the counter intervals, but
	// its levels (7 waiting) come after the request and are not what it ran in.
	v := steady(110)
	v[schema.MetricLLMSchedulerRequestsWaiting] = 7
	r.state(fleetstatetest.Engine("r1", testModel, 110, v))
	got := r.explained()
	require.Contains(t, got, "early")
	assert.Equal(t, 0.0, got["early"][keyWaitingMax], "the state after the end is not 'during' the request")

	// A span long after its state (a replayed batch) goes at once, judged on the state of its time.
	r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id, c.start = "r1", "late", 91 })))
	got = r.explained()
	require.Contains(t, got, "late")
	assert.Equal(t, 0.0, got["late"][keyWaitingAtArrival])
}

// Where an nccl receiver reports on the replica, its batch after the span's end is waited for too: the
// collective evidence of a request shorter than the receiver's interval would otherwise be missing.
func TestSpansWaitForTheCollectiveBatchAfterTheirEnd(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = time.Hour })
	r.state(fleetstatetest.CollectivesAt(90, straggler(true)(90)))
	r.state(fleetstatetest.Engine("r1", testModel, 90, steady(90)))
	r.state(fleetstatetest.Engine("r1", testModel, 110, steady(110)))
	r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id = "r1", "waits" })))
	assert.Empty(t, r.traces.AllTraces(), "the engine state covers the end (110 s), the collective timings do not (90 s)")

	r.state(fleetstatetest.CollectivesAt(110, straggler(true)(110)))
	got := r.explained()
	require.Contains(t, got, "waits")
	assert.InDelta(t, 0.7, got["waits"][keyCollectiveShare], 1e-9, "the batch that covers the request is in the evidence")
}

func TestWaitingIsBounded(t *testing.T) {
	t.Run("max_wait", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.MaxWait = 50 * time.Millisecond })
		r.state(fleetstatetest.Engine("r1", testModel, 90, steady(90)))
		r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id = "r1", "waits" })))
		require.Eventually(t, func() bool { return len(r.traces.AllTraces()) == 1 }, 5*time.Second, 10*time.Millisecond)
		got := r.explained()["waits"]
		assert.Equal(t, schema.RootCauseNone, got[schema.AttrLLMRootCause], "sent with what is known")
	})
	t.Run("buffer full", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.MaxWait, c.MaxPendingSpans = time.Hour, 4 })
		r.state(fleetstatetest.Engine("r1", testModel, 0, steady(0)))
		for i := 0; i < 5; i++ { // each batch is a gateway span and an engine span
			r.send(batchOf(with(normal(), func(c *call) { c.replica, c.tenant, c.id = "r1", "acme", fmt.Sprint(i) })))
		}
		assert.Len(t, r.traces.AllTraces(), 3, "at most 4 spans wait: the oldest batches went out")
		r.shutdown()
		assert.Len(t, r.explained(), 5, "shutdown sends what still waits")
	})
	t.Run("no metrics input", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.MaxWait = time.Hour })
		r.stateIn = nil
		cr := r.spansIn[0].(*tracesInput).core
		cr.mu.Lock()
		cr.metricsInputs = nil // as when no metrics pipeline feeds the connector
		cr.mu.Unlock()
		r.send(batchOf(with(normal(), func(c *call) { c.id = "alone" })))
		assert.Contains(t, r.explained(), "alone", "nothing to wait for")
	})
}

func TestOneInstanceDoesTheWork(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 0 })
	calls := usual(false)
	r.send(batchOf(calls...))
	r.shutdown()
	md := r.metrics.AllMetrics()
	require.NotEmpty(t, md)
	total := 0.0
	forEachPoint(t, md[len(md)-1], schema.MetricLLMRequestRootCause, func(dp pmetric.NumberDataPoint) { total += dp.DoubleValue() })
	assert.Equal(t, float64(len(calls)), total, "three instances saw the batch; each request counts once")
}

func TestMetricsOutput(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 0 })
	for sec := 0.0; sec <= 200; sec += 10 {
		v := steady(sec)
		queueGrowing(sec, v)
		r.state(fleetstatetest.Engine("r1", testModel, sec, v))
	}
	slow := with(normal(), func(c *call) { c.replica, c.tenant, c.id, c.queue, c.cached = "r1", "acme", "slow", 3.4, 100 })
	fast := with(normal(), func(c *call) { c.replica, c.tenant, c.id, c.cached = "r1", "globex", "fast", 400 })
	r.send(batchOf(slow, fast))
	r.shutdown()

	md := r.metrics.AllMetrics()
	require.NotEmpty(t, md)
	last := md[len(md)-1]
	phases := map[string]uint64{}
	var exemplarTraces []pcommon.TraceID
	forEachPhaseDuration(t, last, func(dp pmetric.HistogramDataPoint) {
		a := dp.Attributes().AsRaw()
		assert.Equal(t, testModel, a[schema.AttrGenAIRequestModel])
		assert.Equal(t, "r1", a[schema.AttrServiceInstanceID])
		assert.Equal(t, schema.EngineVLLM, a[schema.AttrLLMEngineName])
		phases[a[schema.AttrLLMPhase].(string)+"/"+a[schema.AttrLLMTenant].(string)] += dp.Count()
		if a[schema.AttrLLMPhase] == schema.PhaseQueue && a[schema.AttrLLMTenant] == "acme" {
			assert.InDelta(t, 3.4, dp.Sum(), 1e-9)
			assert.Equal(t, uint64(1), dp.BucketCounts().At(9), "3.4 s falls in (2.5, 5], the tenth bucket")
		}
		for i := 0; i < dp.Exemplars().Len(); i++ {
			exemplarTraces = append(exemplarTraces, dp.Exemplars().At(i).TraceID())
		}
	})
	assert.Equal(t, map[string]uint64{
		"queue/acme": 1, "prefill/acme": 1, "decode/acme": 1, "other/acme": 1,
		"queue/globex": 1, "prefill/globex": 1, "decode/globex": 1, "other/globex": 1,
	}, phases)
	assert.Len(t, exemplarTraces, 8, "every series carries the trace of its latest request")
	assert.NotContains(t, exemplarTraces, pcommon.NewTraceIDEmpty())

	causes := map[string]float64{}
	forEachPoint(t, last, schema.MetricLLMRequestRootCause, func(dp pmetric.NumberDataPoint) {
		causes[dp.Attributes().AsRaw()[schema.AttrLLMRootCause].(string)] += dp.DoubleValue()
		assert.Equal(t, 1, dp.Exemplars().Len())
	})
	assert.Equal(t, map[string]float64{schema.RootCauseQueueSaturation: 1, schema.RootCauseNone: 1}, causes)
	slowByReason := map[string]float64{}
	forEachPoint(t, last, schema.MetricLLMRequestSlow, func(dp pmetric.NumberDataPoint) {
		slowByReason[dp.Attributes().AsRaw()[schema.AttrLLMSlowReason].(string)] += dp.DoubleValue()
	})
	assert.Equal(t, map[string]float64{slowTTFT: 1}, slowByReason)
	tokens := map[string]float64{}
	forEachPoint(t, last, schema.MetricLLMTenantPromptTokens, func(dp pmetric.NumberDataPoint) {
		a := dp.Attributes().AsRaw()
		tokens[a[schema.AttrLLMTenant].(string)+"/"+a[schema.AttrLLMPromptCache].(string)] += dp.DoubleValue()
	})
	assert.Equal(t, map[string]float64{"acme/cached": 100, "acme/uncached": 400, "globex/cached": 400, "globex/uncached": 100}, tokens)
	processed := map[string]float64{}
	forEachPoint(t, last, schema.MetricLLMTenantTokens, func(dp pmetric.NumberDataPoint) {
		a := dp.Attributes().AsRaw()
		processed[a[schema.AttrLLMTenant].(string)+"/"+a[schema.AttrLLMTokenType].(string)] += dp.DoubleValue()
	})
	assert.Equal(t, map[string]float64{"acme/prompt": 500, "acme/generation": 100, "globex/prompt": 500, "globex/generation": 100}, processed)

	logs := logRecords(r.logs)
	require.Len(t, logs, 1, "one log record per slow request")
	assert.Contains(t, logs[0].Body().Str(), "root cause queue_saturation")
	assert.Equal(t, schema.RootCauseQueueSaturation, logs[0].Attributes().AsRaw()[schema.AttrLLMRootCause])
	assert.False(t, logs[0].TraceID().IsEmpty())
}

func TestCardinalityIsCapped(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait, c.MaxTenants, c.MaxSeries = 0, 3, 10 })
	var calls []call
	for i := 0; i < 20; i++ {
		calls = append(calls, with(normal(), func(c *call) { c.tenant, c.id = fmt.Sprintf("tenant-%02d", i), fmt.Sprint(i) }))
	}
	r.send(batchOf(calls...))
	got := r.explained()
	assert.Equal(t, "tenant-00", got["0"][schema.AttrLLMTenant])
	assert.Equal(t, "tenant-02", got["2"][schema.AttrLLMTenant])
	assert.Equal(t, "tenant-03", got["3"][schema.AttrLLMTenant], "a span keeps its tenant's name; only metrics fold into _other")
	assert.Equal(t, "tenant-19", got["19"][schema.AttrLLMTenant])
	r.shutdown()
	md := r.metrics.AllMetrics()
	series, overflow := 0, 0
	forEachPhaseDuration(t, md[len(md)-1], func(dp pmetric.HistogramDataPoint) {
		series++
		if _, ok := dp.Attributes().Get(overflowAttribute); ok {
			overflow++
		}
	})
	assert.Equal(t, 11, series, "4 tenants (3 + _other) x 4 phases need 16 series: 10, then the overflow series")
	assert.Equal(t, 1, overflow)
}

// Prompt tokens are split by prompt family too, from the gateway span: cached and uncached per tenant and
// family, `unknown` where no family is known.
func TestPromptTokensByPromptFamily(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 0 })
	r.send(batchOf(
		with(normal(), func(c *call) { c.tenant, c.family, c.id, c.prompt, c.cached = "acme", "acme-agent", "a1", 1000, 900 }),
		with(normal(), func(c *call) { c.tenant, c.family, c.id, c.prompt, c.cached = "acme", "acme-agent", "a2", 1000, 800 }),
		with(normal(), func(c *call) { c.tenant, c.family, c.id, c.prompt, c.cached = "acme", "acme-chat", "a3", 500, 0 }),
		with(normal(), func(c *call) { c.tenant, c.family, c.id, c.prompt, c.cached = "globex", "acme-chat", "g1", 300, 100 }),
		with(normal(), func(c *call) { c.tenant, c.id, c.prompt, c.cached = "globex", "g2", 200, 50 }),
		with(normal(), func(c *call) { c.tenant, c.family, c.id = "globex", "vllm-family", "g3" }), // no cached count: no tokens
	))
	r.shutdown()
	md := r.metrics.AllMetrics()
	require.NotEmpty(t, md)
	tokens := map[string]float64{}
	forEachPoint(t, md[len(md)-1], schema.MetricLLMTenantPromptTokens, func(dp pmetric.NumberDataPoint) {
		a := dp.Attributes().AsRaw()
		tokens[fmt.Sprintf("%s/%s/%s", a[schema.AttrLLMTenant], a[schema.AttrLLMPromptFamily], a[schema.AttrLLMPromptCache])] += dp.DoubleValue()
		assert.Len(t, a, 6, "the cache, the four dimensions and the prompt family: %v", a)
	})
	assert.Equal(t, map[string]float64{
		"acme/acme-agent/cached": 1700, "acme/acme-agent/uncached": 300,
		"acme/acme-chat/cached": 0, "acme/acme-chat/uncached": 500,
		"globex/acme-chat/cached": 100, "globex/acme-chat/uncached": 200,
		"globex/unknown/cached": 50, "globex/unknown/uncached": 150,
	}, tokens)
}

// Prompt families beyond max_prompt_families fold into `_other` in the metric, and only that many are kept;
// the span keeps the family its gateway named.
func TestPromptFamiliesAreCapped(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait, c.MaxPromptFamilies = 0, 2 })
	var calls []call
	for i := 0; i < 6; i++ {
		calls = append(calls, with(normal(), func(c *call) {
			c.tenant, c.family, c.id, c.prompt, c.cached = "acme", fmt.Sprintf("family-%d", i), fmt.Sprint(i), 100, 40
		}))
	}
	calls = append(calls, with(normal(), func(c *call) { c.tenant, c.id, c.prompt, c.cached = "acme", "none", 100, 10 }))
	calls = append(calls, with(normal(), func(c *call) { c.tenant, c.family, c.id, c.prompt, c.cached = "acme", "family-1", "again", 100, 100 }))
	r.send(batchOf(calls...))
	assert.Equal(t, "family-5", r.explained()["5"][schema.AttrLLMPromptFamily], "the span keeps its family")
	cr := r.spansIn[0].(*tracesInput).core
	cr.mu.Lock()
	assert.Equal(t, 2, cr.agg.promptFamilies.Len(), "no more families are kept than the cap")
	cr.mu.Unlock()
	r.shutdown()
	md := r.metrics.AllMetrics()
	require.NotEmpty(t, md)
	tokens := map[string]float64{}
	forEachPoint(t, md[len(md)-1], schema.MetricLLMTenantPromptTokens, func(dp pmetric.NumberDataPoint) {
		a := dp.Attributes().AsRaw()
		tokens[fmt.Sprintf("%s/%s", a[schema.AttrLLMPromptFamily], a[schema.AttrLLMPromptCache])] += dp.DoubleValue()
	})
	assert.Equal(t, map[string]float64{
		"family-0/cached": 40, "family-0/uncached": 60,
		"family-1/cached": 140, "family-1/uncached": 60,
		"_other/cached": 160, "_other/uncached": 240, // family-2 to family-5
		"unknown/cached": 10, "unknown/uncached": 90, // no family: not counted against the cap
	}, tokens)
}

func TestTenantFromAGatewaySpanInALaterBatch(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = time.Hour })
	r.state(fleetstatetest.Engine("r1", testModel, 90, steady(90)))
	// The engine's span comes alone (the gateway span ends later, so it is exported later)...
	engine := batchOf(with(normal(), func(c *call) { c.replica, c.id = "r1", "req-42" }))
	r.send(engine)
	// ...then the gateway span, in another trace (a gateway that does not propagate context), same request id.
	gw := ptrace.NewTraces()
	s := gw.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetName("POST /v1/chat/completions")
	s.SetTraceID(pcommon.TraceID{9, 9, 9})
	s.SetSpanID(pcommon.SpanID{9, 9})
	s.Attributes().PutStr("tenant.id", "initech")
	s.Attributes().PutStr(schema.AttrGenAIRequestID, "req-42")
	r.send(gw)
	r.state(fleetstatetest.Engine("r1", testModel, 110, steady(110)))

	var engineSpan ptrace.Span
	for _, td := range r.traces.AllTraces() {
		forEachSpan(td, func(_ pcommon.Map, sp ptrace.Span) {
			if sp.Name() == "llm_request" {
				engineSpan = sp
			}
		})
	}
	require.NotEqual(t, ptrace.Span{}, engineSpan)
	tenant, _ := engineSpan.Attributes().Get(schema.AttrLLMTenant)
	assert.Equal(t, "initech", tenant.Str())
	require.Equal(t, 1, engineSpan.Links().Len(), "linked to the gateway span that shares its request id")
	assert.Equal(t, pcommon.TraceID{9, 9, 9}, engineSpan.Links().At(0).TraceID())
}

// Without an SLO a request is slow when it took longer than it should have: its phases against the model's
// healthy paces (queue near zero, prefill per uncached token, TPOT at its batch size), and against the usual
// request, both by baseline.slow_factor and baseline.slow_margin.
func TestExpectedTimeWhenNoSLOIsSet(t *testing.T) {
	noSLO := func(c *Config) { c.MaxWait, c.SLO.Models, c.Baseline.MinSamples = 0, nil, 50 }
	healthy := func(r *rig) {
		for sec := 0.0; sec <= 3600; sec += 10 {
			r.state(fleetstatetest.Engine("r1", testModel, sec, steady(sec)))
		}
		r.send(batchOf(usual(false)...))
	}
	t.Run("until a model has enough healthy requests, the documented fallback decides", func(t *testing.T) {
		r := newRig(t, noSLO)
		r.state(fleetstatetest.Engine("r1", testModel, 200, steady(200)))
		r.send(batchOf(usual(false)[:40]...))
		r.send(batchOf(
			with(normal(), func(c *call) { c.replica, c.id, c.queue = "r1", "1.5s", 1.4 }),
			with(normal(), func(c *call) { c.replica, c.id, c.queue = "r1", "2.5s", 2.4 })))
		assert.Equal(t, false, r.explained()["1.5s"][schema.AttrLLMSlow], "under the 2 s fallback")
		assert.Equal(t, true, r.explained()["2.5s"][schema.AttrLLMSlow])
		assert.InDelta(t, 2.0, r.explained()["2.5s"][keySLO], 1e-9)
	})
	t.Run("a healthy replica has no slow requests, not its top 5%", func(t *testing.T) {
		r := newRig(t, noSLO)
		healthy(r)
		var calls []call
		for i := range 200 {
			calls = append(calls, with(normal(), func(c *call) {
				c.replica, c.id, c.start = "r1", fmt.Sprint("h", i), 100+float64(i)
				c.queue, c.prefill, c.decode = 0.01*float64(1+i%3), 0.1*(0.8+0.4*float64(i%5)/4), 1.98*(0.9+0.2*float64(i%7)/6)
			}))
		}
		r.send(batchOf(calls...))
		slow := 0
		for i := range 200 {
			if r.explained()[fmt.Sprint("h", i)][schema.AttrLLMSlow] == true {
				slow++
			}
		}
		assert.Zero(t, slow)
	})
	t.Run("a 30-minute incident stays slow: it never becomes the usual", func(t *testing.T) {
		r := newRig(t, func(c *Config) { noSLO(c); c.Baseline.Window = 10 * time.Minute })
		healthy(r)
		judged := 0
		for minute := range 30 {
			var calls []call
			for i := range 20 {
				calls = append(calls, with(normal(), func(c *call) {
					c.replica, c.id, c.start, c.queue = "r1", fmt.Sprintf("inc-%d-%d", minute, i), 100+60*float64(minute)+3*float64(i), 2.5
				}))
			}
			r.send(batchOf(calls...))
			for i := range 20 {
				if r.explained()[fmt.Sprintf("inc-%d-%d", minute, i)][schema.AttrLLMSlow] == true {
					judged++
				}
			}
		}
		assert.Equal(t, 600, judged, "every request of the incident is slow, the last minute's too")
		got := r.explained()["inc-29-19"]
		assert.Equal(t, slowTTFT, got[schema.AttrLLMSlowReason])
		assert.Less(t, got[keySLO], 1.2, "the limit is still the healthy one: the usual first token (0.12 s) plus the 1 s margin")
	})
	t.Run("a long prompt at the usual pace is slow against the usual request, and long_prompt says why", func(t *testing.T) {
		r := newRig(t, noSLO)
		healthy(r)
		r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id, c.prompt, c.prefill = "r1", "long", 8000, 1.6 })))
		got := r.explained()["long"]
		assert.Equal(t, true, got[schema.AttrLLMSlow])
		assert.Equal(t, schema.RootCauseLongPrompt, got[schema.AttrLLMRootCause])
	})
	t.Run("a slow decode against the pace at its batch size", func(t *testing.T) {
		r := newRig(t, noSLO)
		healthy(r)
		r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id, c.decode = "r1", "slow-decode", 6 })))
		got := r.explained()["slow-decode"]
		assert.Equal(t, true, got[schema.AttrLLMSlow])
		assert.Equal(t, slowTPOT, got[schema.AttrLLMSlowReason])
	})
}

// A decode batch far bigger than the model runs when healthy is a batch too big, not a pace to learn: its
// requests are judged at the pace of the biggest healthy batch, however many of them escaped being slow.
func TestABatchTooBigIsJudgedAtTheHealthyPace(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait, c.SLO.Models, c.Baseline.MinSamples = 0, nil, 50 })
	crowded := func(sec float64) map[string]float64 {
		v := steady(sec)
		v[schema.MetricLLMSchedulerRequestsRunning] = 64
		return v
	}
	for sec := 0.0; sec <= 3600; sec += 10 {
		r.state(fleetstatetest.Engine("r1", testModel, sec, steady(sec)))
		r.state(fleetstatetest.Engine("crowded", testModel, sec, crowded(sec)))
	}
	// A thousand healthy requests in r1's batch of 16, at 20 ms a token, within the state window.
	var calls []call
	for i := range 1000 {
		calls = append(calls, with(normal(), func(c *call) { c.replica, c.id, c.start = "r1", fmt.Sprint("h", i), 2800+0.6*float64(i) }))
	}
	r.send(batchOf(calls...))
	// Sixty in a batch of 64 at 36 ms a token: under twice the healthy pace, so none is slow.
	calls = nil
	for i := range 60 {
		calls = append(calls, with(normal(), func(c *call) {
			c.replica, c.id, c.start, c.decode = "crowded", fmt.Sprint("c", i), 2800+10*float64(i), 99*0.036
		}))
	}
	r.send(batchOf(calls...))
	for i := range 60 {
		require.Equal(t, false, r.explained()[fmt.Sprint("c", i)][schema.AttrLLMSlow], "c%d", i)
	}
	// Then one at 60 ms a token in the same batch: three times the healthy pace.
	r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id, c.start, c.decode = "crowded", "too-big", 3450, 99*0.06 })))
	got := r.explained()["too-big"]
	assert.Equal(t, true, got[schema.AttrLLMSlow], "judged at the healthy batch's 20 ms, not at the 36 ms the crowded batch taught")
	assert.Equal(t, slowTPOT, got[schema.AttrLLMSlowReason])
	assert.Equal(t, schema.RootCauseDecodeContention, got[schema.AttrLLMRootCause])
}

// The requests of an incident that escaped being slow still ran beside the slow ones (behind their queue, in
// their batch): they teach nothing about the healthy pace, or an incident's near misses become the usual.
func TestRequestsBesideASlowOneAreNotLearnedFrom(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait, c.SLO.Models, c.Baseline.MinSamples = 0, nil, 50 })
	scraped := 0.0
	scrapeUntil := func(until float64) { // as a collector sees it: the state up to now, not the future's
		for ; scraped <= until; scraped += 10 {
			r.state(fleetstatetest.Engine("r1", testModel, scraped, steady(scraped)))
		}
	}
	scrapeUntil(100)
	r.send(batchOf(usual(false)...))
	// For half an hour, each minute: ten requests queue 2 s (slow against the usual 0.12 s first token and
	// the 1 s margin) and ten queue 0.9 s (not slow), all on r1 at once.
	last := ""
	for minute := range 30 {
		scrapeUntil(170 + 60*float64(minute))
		var calls []call
		for i := range 10 {
			start := 100 + 60*float64(minute) + 5*float64(i)
			last = fmt.Sprintf("slow-%d-%d", minute, i)
			calls = append(calls,
				with(normal(), func(c *call) { c.replica, c.id, c.start, c.queue = "r1", last, start, 2 }),
				with(normal(), func(c *call) {
					c.replica, c.id, c.start, c.queue = "r1", fmt.Sprintf("near-%d-%d", minute, i), start+1, 0.9
				}))
		}
		r.send(batchOf(calls...))
	}
	got := r.explained()[last]
	assert.Equal(t, true, got[schema.AttrLLMSlow], "the incident's last request is still slow")
	assert.Less(t, got[keySLO], 1.2, "the limit is still the healthy one: the usual first token plus the 1 s margin")
}

// Outside an incident a slow request now and then must not stop the learning: here one request in twenty
// queues 3 s and then decodes for a minute, so every other request shares r1 with a slow one; the model
// still leaves its fallback limits.
func TestASlowRequestNowAndThenStopsNoLearning(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait, c.SLO.Models, c.Baseline.MinSamples = 0, nil, 50 })
	scraped := 0.0
	for batch := range 10 {
		for ; scraped <= 100+20*float64(batch+1)+70; scraped += 10 {
			r.state(fleetstatetest.Engine("r1", testModel, scraped, steady(scraped)))
		}
		var calls []call
		for i := range 20 {
			start := 100 + 20*float64(batch) + float64(i)
			if i == 0 {
				calls = append(calls, with(normal(), func(c *call) {
					c.replica, c.id, c.start, c.queue, c.decode = "r1", fmt.Sprint("slow-", batch), start, 3, 60
				}))
				continue
			}
			calls = append(calls, with(normal(), func(c *call) { c.replica, c.id, c.start = "r1", fmt.Sprintf("ok-%d-%d", batch, i), start }))
		}
		r.send(batchOf(calls...))
	}
	require.Equal(t, true, r.explained()["slow-9"][schema.AttrLLMSlow])
	r.send(batchOf(with(normal(), func(c *call) { c.replica, c.id, c.start, c.queue = "r1", "after", 310, 1.5 })))
	got := r.explained()["after"]
	assert.Equal(t, true, got[schema.AttrLLMSlow], "judged against the learned first token (0.12 s and the 1 s margin), not the 2 s fallback")
	assert.Less(t, got[keySLO], 1.2)
}

func TestConfig(t *testing.T) {
	configtest.Sections(t, "testdata/config.yaml", createDefaultConfig, map[string]string{
		"llm_root_cause":      "",
		"llm_root_cause/slo":  "",
		"llm_root_cause/bad":  "max_wait: must not be negative",
		"llm_root_cause/bad2": "dimensions: \"user.id\" is not one of",
		"llm_root_cause/bad3": "max_prompt_families: must be positive, got 0",
	})
	cfg := createDefaultConfig()
	cfg.Rules.QueueShare, cfg.HistogramBuckets = 1.5, []float64{1, 0.5}
	err := cfg.Validate()
	assert.ErrorContains(t, err, "rules.queue_share: must be between 0 and 1")
	assert.ErrorContains(t, err, "histogram_buckets: bounds must increase")
}

func forEachPoint(t *testing.T, md pmetric.Metrics, name string, fn func(pmetric.NumberDataPoint)) {
	t.Helper()
	dps := metricstest.Numbers(md, name)
	require.NotEmpty(t, dps, "no %s", name)
	for _, dp := range dps {
		fn(dp)
	}
}

// forEachPhaseDuration calls fn with each point of llm.request.phase.duration, which must be there.
func forEachPhaseDuration(t *testing.T, md pmetric.Metrics, fn func(pmetric.HistogramDataPoint)) {
	t.Helper()
	dps := metricstest.Histograms(md, schema.MetricLLMRequestPhaseDuration)
	require.NotEmpty(t, dps, "no %s", schema.MetricLLMRequestPhaseDuration)
	for _, dp := range dps {
		fn(dp)
	}
}

// SGLang's request span carries usage but no latency attributes: its stage slices say where the time went.
func TestSGLangStageSpans(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 0 })
	for sec := 0.0; sec <= 200; sec += 10 {
		v := steady(sec)
		queueGrowing(sec, v)
		r.state(fleetstatetest.Engine("r1", testModel, sec, v))
	}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "sglang")
	rs.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, "r1")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	root := spans.AppendEmpty()
	root.SetName("Req 5f2c9a1e")
	root.SetTraceID(pcommon.TraceID{7})
	root.SetSpanID(pcommon.SpanID{7, 1})
	root.SetStartTimestamp(ns(100))
	root.SetEndTimestamp(ns(105.5))
	root.Attributes().PutInt(schema.AttrGenAIUsagePromptTokens, 1200)
	root.Attributes().PutInt(schema.AttrGenAIUsageCompletionTokens, 101)
	root.Attributes().PutInt(schema.AttrGenAIUsageCachedTokens, 1000)
	root.Attributes().PutStr(schema.AttrGenAIRequestID, "sglang-1")
	for i, stage := range []struct {
		name     string
		from, to float64
	}{{"prefill_waiting", 100.01, 103.41}, {"prefill_forward", 103.41, 103.5}, {"decode_loop", 103.5, 105.5}} {
		s := spans.AppendEmpty()
		s.SetName(stage.name)
		s.SetTraceID(root.TraceID())
		s.SetSpanID(pcommon.SpanID{7, byte(2 + i)})
		s.SetParentSpanID(root.SpanID())
		s.SetStartTimestamp(ns(stage.from))
		s.SetEndTimestamp(ns(stage.to))
	}
	r.send(td)
	got := r.explained()
	require.NotContains(t, got, "", "stage spans are not requests")
	var a map[string]any
	for _, out := range r.traces.AllTraces() {
		forEachSpan(out, func(_ pcommon.Map, s ptrace.Span) {
			if s.Name() == "Req 5f2c9a1e" {
				a = s.Attributes().AsRaw()
			}
		})
	}
	require.NotNil(t, a)
	assert.InDelta(t, 3.4, a[schema.AttrLLMLatencyQueue], 1e-6)
	assert.InDelta(t, 0.09, a[schema.AttrLLMLatencyPrefill], 1e-6)
	assert.InDelta(t, 2.0, a[schema.AttrLLMLatencyDecode], 1e-6)
	assert.InDelta(t, 5.5, a[schema.AttrLLMLatencyE2e], 1e-6)
	assert.InDelta(t, 3.5, a[schema.AttrLLMLatencyTtft], 1e-6, "to the first decode stage")
	assert.InDelta(t, 0.01, a[schema.AttrLLMLatencyOther], 1e-6)
	assert.Equal(t, int64(1000), a[schema.AttrLLMTokensCached])
	assert.Equal(t, schema.RootCauseQueueSaturation, a[schema.AttrLLMRootCause], a[schema.AttrLLMRootCauseEvidence])
}

// The explained span names the model it was judged against, taken from the replica's metrics where the
// engine's span has none (vLLM's), and never over a model the span already carries.
func TestExplainedSpansNameTheirModel(t *testing.T) {
	r := newRig(t)
	r.state(fleetstatetest.Engine("r1", testModel, 90, steady(90)))
	r.state(fleetstatetest.Engine("r1", testModel, 110, steady(110)))
	r.send(batchOf(
		with(normal(), func(c *call) { c.replica, c.id = "r1", "from-metrics" }),
		with(normal(), func(c *call) { c.replica, c.id, c.model = "r1", "own", "served-name" }),
	))
	got := r.explained()
	require.Contains(t, got, "from-metrics")
	require.Contains(t, got, "own")
	assert.Equal(t, testModel, got["from-metrics"][schema.AttrGenAIRequestModel])
	assert.Equal(t, "served-name", got["own"][schema.AttrGenAIResponseModel])
	assert.NotContains(t, got["own"], schema.AttrGenAIRequestModel, "the engine's own model name is kept as it wrote it")
}
