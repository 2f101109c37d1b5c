package llmrootcauseconnector

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// SGLang's request trees, built the way its tracing writes them (testdata/sglang_trees/NOTE.md says from
// which source): a request span per request and side, a thread span per process thread and rank under it,
// stage slices under the thread spans. Each process exports on its own, so each process's spans are one
// batch here, and the batches come in the order a case says. Every case: exactly one explained span, the
// request span; its phases the slices' time (within 1 ms); the request counted once in every metric.

// sglProcess is the spans one SGLang process exports for one request.
type sglProcess struct {
	replica string
	spans   ptrace.Traces
	list    ptrace.SpanSlice
}

type sglTree struct {
	t     *testing.T
	trace pcommon.TraceID
	seq   byte
	start float64 // the request's arrival, seconds after the epoch
}

func newSGLTree(t *testing.T, n byte) *sglTree {
	return &sglTree{t: t, trace: pcommon.TraceID{0x5a, n}, start: 100}
}

func (b *sglTree) process(replica string) *sglProcess {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "sglang")
	rs.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, replica)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("sglang server")
	return &sglProcess{replica: replica, spans: td, list: ss.Spans()}
}

// span adds a span, times in milliseconds after the request's arrival.
func (b *sglTree) span(p *sglProcess, name string, parent pcommon.SpanID, from, to float64) ptrace.Span {
	b.seq++
	s := p.list.AppendEmpty()
	s.SetTraceID(b.trace)
	s.SetSpanID(pcommon.SpanID{0x5a, b.trace[1], b.seq})
	s.SetParentSpanID(parent)
	s.SetName(name)
	s.SetStartTimestamp(ns(b.start + from/1e3))
	s.SetEndTimestamp(ns(b.start + to/1e3))
	return s
}

// request is SGLang's request span (role "" when unified) with the finish attributes its tokenizer sets:
// usage, and latencies from its own clock (time_in_model_prefill from the dispatch to the first output,
// decode from there to the finish; a non-streaming response's first output is its last).
func (b *sglTree) request(p *sglProcess, role, rid string, e2eMS, ttftMS, dispatchMS float64, prompt, gen int) ptrace.Span {
	s := b.span(p, role+" Req "+rid[:8], pcommon.SpanID{0x6a, b.trace[1]}, 0, e2eMS) // the caller's span
	a := s.Attributes()
	a.PutStr("rid", rid)
	a.PutStr("module", "sglang::request")
	a.PutStr(schema.AttrGenAIRequestID, rid)
	a.PutInt(schema.AttrGenAIUsagePromptTokens, int64(prompt))
	a.PutInt(schema.AttrGenAIUsageCompletionTokens, int64(gen))
	a.PutInt(schema.AttrGenAIUsageCachedTokens, 0)
	a.PutStr(schema.AttrGenAIResponseModel, testModel)
	a.PutDouble(schema.AttrGenAILatencyTimeToFirstToken, ttftMS/1e3)
	a.PutDouble(schema.AttrGenAILatencyE2e, e2eMS/1e3)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelDecode, (e2eMS-ttftMS)/1e3)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelPrefill, (ttftMS-dispatchMS)/1e3)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelInference, (e2eMS-dispatchMS)/1e3)
	return s
}

// thread is a thread span as SGLang names it: label, ranks where set, host and pid.
func (b *sglTree) thread(p *sglProcess, req ptrace.Span, label string, tp, pp int, from, to float64) ptrace.Span {
	name := label
	if tp >= 0 {
		name += fmt.Sprintf(" [TP %d] ", tp)
	}
	if pp >= 0 {
		name += fmt.Sprintf(" [PP %d] ", pp)
	}
	s := b.span(p, name+fmt.Sprintf("(host:3f9a1c0e | pid:%d)", 4100+tp), req.SpanID(), from, to)
	a := s.Attributes()
	if tp >= 0 {
		a.PutInt("tp_rank", int64(tp))
	}
	if pp >= 0 {
		a.PutInt("pp_rank", int64(pp))
	}
	a.PutStr("host_id", "3f9a1c0e5d7b4a2e")
	a.PutInt("pid", int64(4100+tp))
	a.PutStr("thread_label", label)
	return s
}

type slice struct {
	name     string
	from, to float64 // ms
	inner    []slice // slices opened inside this one
}

func (b *sglTree) slices(p *sglProcess, parent ptrace.Span, ss []slice, shift float64) {
	var prev ptrace.Span
	for _, sl := range ss {
		s := b.span(p, sl.name, parent.SpanID(), sl.from+shift, sl.to+shift)
		if prev != (ptrace.Span{}) { // SGLang links each top-level slice to the one before
			l := s.Links().AppendEmpty()
			l.SetTraceID(b.trace)
			l.SetSpanID(prev.SpanID())
		}
		prev = s
		b.slices(p, s, sl.inner, shift)
	}
}

// The request (SGLang 0.5.20, --trace-level 3, unified, TP 1): tokenize and dispatch on the
// tokenizer, the scheduler's request_process, prefill_waiting 22.0 ms, prefill_forward 25.4 ms and
// decode_forward 136.6 ms from the end of prefill to the end of the request, decode_loop steps inside it.
func schedulerSlices(level int) []slice {
	out := []slice{}
	if level >= 2 {
		out = append(out, slice{name: "request_process", from: 5.7, to: 7.7})
	}
	decode := slice{name: "decode_forward", from: 55.1, to: 191.7}
	if level >= 3 {
		decode.inner = []slice{{name: "decode_loop", from: 55.1, to: 64.2}, {name: "decode_loop", from: 64.2, to: 73.3}}
	}
	return append(out,
		slice{name: "prefill_waiting", from: 7.7, to: 29.7},
		slice{name: "prefill_forward", from: 29.7, to: 55.1},
		decode)
}

var tokenizerSlices = []slice{{name: "tokenize", from: 0, to: 2}, {name: "api_server_dispatch", from: 2, to: 5.7}}

type phasesMS struct{ queue, prefill, decode, ttft, e2e float64 }

// unified builds a unified request: the tokenizer process (request span, its thread span and slices) and
// one scheduler process per TP rank; rank k's slices run k*0.2 ms late.
func unified(t *testing.T, n byte, tp int, streaming bool, level int) (tokenizer *sglProcess, ranks []*sglProcess) {
	b := newSGLTree(t, n)
	tokenizer = b.process("r1")
	ttft := 191.7 // non-streaming: SGLang's first output is the whole response
	if streaming {
		ttft = 57.3 // the first chunk, out of the detokenizer after the prefill
	}
	req := b.request(tokenizer, "", fmt.Sprintf("%02x1c9e7a4b2d4f0c8e6a1b3d5f7092aa", n), 191.7, ttft, 5.7, 812, 64)
	th := b.thread(tokenizer, req, "Tokenizer", -1, -1, 0, 191.7)
	b.slices(tokenizer, th, tokenizerSlices, 0)
	for rank := range tp {
		p := b.process("r1")
		rankTP := rank
		sch := b.thread(p, req, "Scheduler", rankTP, 0, 5.7, 191.7)
		b.slices(p, sch, schedulerSlices(level), float64(rank)*0.2)
		ranks = append(ranks, p)
	}
	return tokenizer, ranks
}

func sglRig(t *testing.T) *rig {
	r := newRig(t, func(c *Config) { c.MaxWait = time.Minute })
	for sec := 0.0; sec <= 200; sec += 10 {
		r.state(fleetstatetest.Engine("r1", testModel, sec, steady(sec)))
		r.state(fleetstatetest.Engine("r2", testModel, sec, steady(sec)))
	}
	return r
}

// explainedSpans are the spans that came out with an explanation.
func explainedSpans(r *rig) []ptrace.Span {
	var out []ptrace.Span
	for _, td := range r.traces.AllTraces() {
		forEachSpan(td, func(_ pcommon.Map, s ptrace.Span) {
			if _, ok := s.Attributes().Get(schema.AttrLLMRootCause); ok {
				out = append(out, s)
			}
		})
	}
	return out
}

// checkOnce: one explained span, the request span named, with the phases want says, and the request
// counted once in the root causes, each phase's histogram, and the tenant's tokens.
func checkOnce(t *testing.T, r *rig, name string, want phasesMS, prompt, gen int) {
	t.Helper()
	got := explainedSpans(r)
	require.Len(t, got, 1, "one explained span per request")
	require.Equal(t, name, got[0].Name())
	a := got[0].Attributes().AsRaw()
	const ms = 1e-3 // within 1 ms
	assert.InDelta(t, want.queue/1e3, a[schema.AttrLLMLatencyQueue], ms, "queue")
	assert.InDelta(t, want.prefill/1e3, a[schema.AttrLLMLatencyPrefill], ms, "prefill")
	assert.InDelta(t, want.decode/1e3, a[schema.AttrLLMLatencyDecode], ms, "decode")
	assert.InDelta(t, want.e2e/1e3, a[schema.AttrLLMLatencyE2e], ms, "e2e")
	assert.InDelta(t, (want.e2e-want.queue-want.prefill-want.decode)/1e3, a[schema.AttrLLMLatencyOther], ms, "other")
	assert.InDelta(t, want.ttft/1e3, a[schema.AttrLLMLatencyTtft], ms, "ttft")
	assert.InDelta(t, want.decode/1e3/float64(gen-1), a[schema.AttrLLMLatencyTpot], 1e-5, "tpot")

	r.shutdown()
	all := r.metrics.AllMetrics()
	require.NotEmpty(t, all)
	md := pmetric.NewMetrics()
	for _, m := range all {
		m.ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
	}
	causes := 0.0
	forEachPoint(t, md, schema.MetricLLMRequestRootCause, func(dp pmetric.NumberDataPoint) { causes += dp.DoubleValue() })
	assert.Equal(t, 1.0, causes, "root causes count the request once")
	phases := map[string]uint64{}
	forEachPhaseDuration(t, md, func(dp pmetric.HistogramDataPoint) {
		p, _ := dp.Attributes().Get(schema.AttrLLMPhase)
		phases[p.Str()] += dp.Count()
	})
	for _, p := range []string{schema.PhaseQueue, schema.PhasePrefill, schema.PhaseDecode} {
		assert.Equal(t, uint64(1), phases[p], "phase %s counted once", p)
	}
	tokens := map[string]float64{}
	forEachPoint(t, md, schema.MetricLLMTenantTokens, func(dp pmetric.NumberDataPoint) {
		kind, _ := dp.Attributes().Get(schema.AttrLLMTokenType)
		tokens[kind.Str()] += dp.DoubleValue()
	})
	assert.Equal(t, map[string]float64{"prompt": float64(prompt), "generation": float64(gen)}, tokens, "the tenant's tokens once")
}

func send(r *rig, ps ...*sglProcess) {
	for _, p := range ps {
		r.send(p.spans)
	}
}

func TestSGLangTreeOneRequest(t *testing.T) {
	// Non-streaming: SGLang's TTFT is the e2e and its decode 0; the slices say the first token came at the
	// end of the prefill (55.1 ms) and the decode took 136.6 ms.
	for _, level := range []int{3, 2, 1} { // --trace-level: fewer, less nested slices
		t.Run(fmt.Sprintf("level%d", level), func(t *testing.T) {
			r := sglRig(t)
			tok, ranks := unified(t, byte(level), 1, false, level)
			send(r, tok, ranks[0])
			checkOnce(t, r, " Req "+fmt.Sprintf("%02x1c9e7a", level), phasesMS{queue: 22.0, prefill: 25.4, decode: 136.6, ttft: 55.1, e2e: 191.7}, 812, 64)
		})
	}
}

func TestSGLangTreeStreaming(t *testing.T) {
	// Streaming: SGLang's own TTFT (the first chunk out) describes the response and stays.
	r := sglRig(t)
	tok, ranks := unified(t, 4, 1, true, 3)
	send(r, ranks[0], tok)
	checkOnce(t, r, " Req 041c9e7a", phasesMS{queue: 22.0, prefill: 25.4, decode: 136.6, ttft: 57.3, e2e: 191.7}, 812, 64)
}

func TestSGLangTreeTensorParallel(t *testing.T) {
	// TP 4: four scheduler thread spans, one per rank, each its own process and batch; rank 0 comes after
	// the request span, so the request waits for it. The ranks describe the request once: rank 0's slices.
	r := sglRig(t)
	tok, ranks := unified(t, 5, 4, false, 3)
	send(r, ranks[3], ranks[1], tok)
	assert.Empty(t, explainedSpans(r), "rank 0's slices have not come yet")
	send(r, ranks[0], ranks[2])
	checkOnce(t, r, " Req 051c9e7a", phasesMS{queue: 22.0, prefill: 25.4, decode: 136.6, ttft: 55.1, e2e: 191.7}, 812, 64)
}

func TestSGLangTreeAcrossThreeBatches(t *testing.T) {
	// The scheduler exports its first slices before the request finishes, the tokenizer the request span,
	// the scheduler the rest with its thread span: three batches, the request span in the middle.
	r := sglRig(t)
	tok, ranks := unified(t, 6, 1, false, 3)
	early, late := splitSlices(ranks[0], "prefill_waiting", "request_process")
	send(r, early, tok)
	assert.Empty(t, explainedSpans(r), "the decode slices and the thread span have not come yet")
	send(r, late)
	checkOnce(t, r, " Req 061c9e7a", phasesMS{queue: 22.0, prefill: 25.4, decode: 136.6, ttft: 55.1, e2e: 191.7}, 812, 64)
}

// splitSlices cuts a process's batch in two: the named slices, and everything else.
func splitSlices(p *sglProcess, names ...string) (picked, rest *sglProcess) {
	take := map[string]bool{}
	for _, n := range names {
		take[n] = true
	}
	mk := func() *sglProcess {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		p.spans.ResourceSpans().At(0).Resource().CopyTo(rs.Resource())
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("sglang server")
		return &sglProcess{replica: p.replica, spans: td, list: ss.Spans()}
	}
	picked, rest = mk(), mk()
	for i := 0; i < p.list.Len(); i++ {
		s := p.list.At(i)
		if take[s.Name()] {
			s.CopyTo(picked.list.AppendEmpty())
		} else {
			s.CopyTo(rest.list.AppendEmpty())
		}
	}
	return picked, rest
}

func TestSGLangTreeEarlyLayout(t *testing.T) {
	// The early 0.5 layout: flat slices under "Scheduler [TP 0] (host:... | pid:...)", one decode_loop per
	// step, the request span under a "Bootstrap Room" span.
	r := sglRig(t)
	b := newSGLTree(t, 7)
	p := b.process("r1")
	room := b.span(p, "Bootstrap Room 0x0", pcommon.SpanID{}, 0, 120)
	room.Attributes().PutStr("bootstrap_room", "0x0")
	req := b.request(p, "", "071c9e7a4b2d4f0c8e6a1b3d5f7092aa", 120, 120, 3, 400, 21)
	req.SetParentSpanID(room.SpanID())
	sch := b.thread(p, req, "Scheduler", 0, -1, 3, 120)
	steps := []slice{{name: "prefill_waiting", from: 3, to: 10}, {name: "prefill_forward", from: 10, to: 20}}
	for i := range 20 {
		steps = append(steps, slice{name: "decode_loop", from: 20 + float64(i)*5, to: 25 + float64(i)*5})
	}
	b.slices(p, sch, steps, 0)
	send(r, p)
	checkOnce(t, r, " Req 071c9e7a", phasesMS{queue: 7, prefill: 10, decode: 100, ttft: 20, e2e: 120}, 400, 21)
}

func TestSGLangTreeDisaggregated(t *testing.T) {
	// Prefill/decode disaggregation: the router sends the request to a prefill server (r2) and a decode
	// server (r1); each writes its own request span, "prefill Req" and "decode Req", in the caller's trace,
	// with the same bootstrap room. The decode side's is the response and the one explained; the prefill
	// side's slices (bootstrap, waiting, forward, KV transfer) say its queue and prefill.
	r := sglRig(t)
	b := newSGLTree(t, 8)
	rid := "081c9e7a4b2d4f0c8e6a1b3d5f7092aa"
	ptok := b.process("r2")
	preq := b.request(ptok, "prefill", rid, 60, 58, 0.5, 2048, 1)
	preq.Attributes().PutStr("bootstrap_room", "0x51d3")
	psch := b.process("r2")
	pth := b.thread(psch, preq, "Scheduler", 0, -1, 1, 60)
	b.slices(psch, pth, []slice{
		{name: "prefill_prepare", from: 1, to: 2},
		{name: "prefill_bootstrap", from: 2, to: 6},
		{name: "prefill_waiting", from: 6, to: 16},
		{name: "prefill_forward", from: 16, to: 46},
		{name: "prefill_transfer_kv_cache", from: 46, to: 58},
	}, 0)
	dtok := b.process("r1")
	dreq := b.request(dtok, "decode", rid, 200, 200, 0.5, 2048, 139)
	dreq.Attributes().PutStr("bootstrap_room", "0x51d3")
	dsch := b.process("r1")
	dth := b.thread(dsch, dreq, "Scheduler", 0, -1, 1, 200)
	b.slices(dsch, dth, []slice{
		{name: "decode_prepare", from: 1, to: 2},
		{name: "decode_bootstrap", from: 2, to: 5},
		{name: "decode_transferred", from: 5, to: 60}, // waiting for the KV cache: mostly the prefill side's work
		{name: "decode_waiting", from: 60, to: 62},
		{name: "decode_forward", from: 62, to: 200, inner: []slice{{name: "fake_output", from: 62, to: 63}, {name: "decode_loop", from: 63, to: 70}}},
	}, 0)
	send(r, dtok, dsch)
	assert.Empty(t, explainedSpans(r), "the prefill side has not come yet")
	send(r, psch, ptok)
	// queue: bootstrap and waiting on the prefill side (2-16 ms) and, after the KV cache landed, the decode
	// side's wait for it and for a decode slot (58-62 ms); prefill: forward and transfer (16-58 ms).
	checkOnce(t, r, "decode Req 081c9e7a", phasesMS{queue: 18, prefill: 42, decode: 138, ttft: 62, e2e: 200}, 2048, 139)
}

// A request whose tree never completes goes out at max_wait with what came.
func TestSGLangTreeIncompleteAtMaxWait(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 50 * time.Millisecond })
	for sec := 0.0; sec <= 200; sec += 10 {
		r.state(fleetstatetest.Engine("r1", testModel, sec, steady(sec)))
	}
	tok, ranks := unified(t, 9, 2, false, 3)
	send(r, tok, ranks[1]) // rank 0 never comes
	require.Eventually(t, func() bool { return len(explainedSpans(r)) == 1 }, 5*time.Second, 10*time.Millisecond)
	a := explainedSpans(r)[0].Attributes().AsRaw()
	assert.InDelta(t, 0.1366, a[schema.AttrLLMLatencyDecode], 1e-3, "rank 1's slices, the best there is")
	assert.False(t, math.IsNaN(a[schema.AttrLLMLatencyQueue].(float64)))
}

// A span that is only named like SGLang's request span (no latency attributes, no slices) is not a request.
func TestSGLangTreeNameAloneIsNoRequest(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 0 })
	b := newSGLTree(t, 10)
	p := b.process("r1")
	b.span(p, "Req 0a1b2c3d", pcommon.SpanID{}, 0, 10)
	send(r, p)
	assert.Empty(t, explainedSpans(r))
}
