package fleetsim

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// otlpSink is a minimal OTLP/HTTP traces receiver.
type otlpSink struct {
	mu     sync.Mutex
	traces []ptrace.Traces
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf on /v1/traces", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.traces = append(s.traces, req.Traces())
	s.mu.Unlock()
	resp, _ := ptraceotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(resp) //nolint:errcheck
}

type receivedSpan struct {
	span     ptrace.Span
	resource pcommon.Map
	scope    string
}

func (s *otlpSink) spans() []receivedSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []receivedSpan
	for _, td := range s.traces {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					out = append(out, receivedSpan{span: ss.Spans().At(k), resource: rs.Resource().Attributes(), scope: ss.Scope().Name()})
				}
			}
		}
	}
	return out
}

func str(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

func dbl(t *testing.T, m pcommon.Map, k string) float64 {
	t.Helper()
	v, ok := m.Get(k)
	require.True(t, ok, "attribute %s missing", k)
	require.Equal(t, pcommon.ValueTypeDouble, v.Type(), "attribute %s", k)
	return v.Double()
}

func integer(t *testing.T, m pcommon.Map, k string) int64 {
	t.Helper()
	v, ok := m.Get(k)
	require.True(t, ok, "attribute %s missing", k)
	require.Equal(t, pcommon.ValueTypeInt, v.Type(), "attribute %s", k)
	return v.Int()
}

// TestSpansOverOTLP runs a fleet of every engine, sends its spans to an OTLP/HTTP sink and checks their
// shapes: a gateway span per request with the tenant, and under it in the same trace the engine's span with
// its engine's attributes and the replica's service.instance.id.
func TestSpansOverOTLP(t *testing.T) {
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()

	cfg := testConfig(t, "baseline")
	cfg.Engines = Engines()
	cfg.TP = 2 // SGLang writes a scheduler thread span per rank
	f, err := New(cfg)
	require.NoError(t, err)
	tp := f.Config().TP
	eps, err := f.Serve("127.0.0.1", 0)
	require.NoError(t, err)
	defer f.Close()
	exp := NewOTLPExporter(srv.URL)
	for t0 := 10.0; !f.Done(); t0 += 10 {
		f.Advance(t0)
		require.NoError(t, exp.Export(context.Background(), f.TakeTraces()))
	}
	truth := map[string]Truth{}
	for _, tr := range f.GroundTruth() {
		truth[tr.RequestID] = tr
	}
	instance := map[string]string{}
	for _, ep := range eps {
		instance[ep.Engine] = ep.Instance
	}

	spans := sink.spans()
	gateways := map[string]receivedSpan{} // SERVER spans by span id
	clients := map[string]receivedSpan{}  // CLIENT spans by parent span id
	byTrace := map[string][]receivedSpan{}
	for _, s := range spans {
		byTrace[s.span.TraceID().String()] = append(byTrace[s.span.TraceID().String()], s)
		if str(s.resource, "service.name") != GatewayService {
			continue
		}
		switch s.span.Kind() {
		case ptrace.SpanKindServer:
			gateways[s.span.SpanID().String()] = s
		case ptrace.SpanKindClient:
			clients[s.span.ParentSpanID().String()] = s
		default:
			t.Errorf("gateway span of kind %v", s.span.Kind())
		}
	}
	require.Len(t, gateways, len(truth), "one gateway span per finished request")
	require.Len(t, clients, len(truth), "one call to a replica per request")

	seen := map[string]int{}
	for _, gw := range gateways {
		sp := gw.span
		a := sp.Attributes()
		id := str(a, AttrRequestID)
		tr, ok := truth[id]
		require.True(t, ok, "gateway span for unknown request %q", id)
		assert.Equal(t, GatewaySpanName, sp.Name())
		assert.Equal(t, ptrace.SpanKindServer, sp.Kind())
		assert.True(t, sp.ParentSpanID().IsEmpty(), "the gateway span is the root")
		assert.Equal(t, tr.TraceID, sp.TraceID().String())
		assert.Equal(t, tr.Tenant, str(a, AttrTenant))
		assert.Equal(t, tr.Family, str(a, AttrPromptFamily))
		assert.Equal(t, int64(tr.CachedTokens), integer(t, a, AttrCachedTokens))

		client := clients[sp.SpanID().String()].span
		assert.Equal(t, sp.TraceID(), client.TraceID())
		assert.Equal(t, id, str(client.Attributes(), AttrRequestID))
		assert.Equal(t, tr.Tenant, str(client.Attributes(), AttrTenant), "the engine span's parent carries the tenant")
		assert.Equal(t, tr.Family, str(client.Attributes(), AttrPromptFamily))
		assert.Equal(t, tr.Instance, str(client.Attributes(), "server.address")+":"+str(client.Attributes(), "server.port"))
		assert.True(t, client.StartTimestamp() > sp.StartTimestamp() && client.EndTimestamp() < sp.EndTimestamp())

		var engine []receivedSpan
		for _, s := range byTrace[sp.TraceID().String()] {
			if s.span.SpanID() != sp.SpanID() && s.span.SpanID() != client.SpanID() {
				engine = append(engine, s)
			}
		}
		seen[tr.Engine]++
		switch tr.Engine {
		case EngineLlamaCpp:
			assert.Empty(t, engine, "llama.cpp has no tracing")
		case EngineVLLM:
			require.Len(t, engine, 1)
			checkVLLMSpan(t, engine[0], client, tr, instance[EngineVLLM])
		case EngineTRTLLM:
			require.Len(t, engine, 1)
			e := engine[0]
			assert.Equal(t, TRTLLMServiceName, str(e.resource, "service.name"))
			assert.Equal(t, instance[EngineTRTLLM], str(e.resource, "service.instance.id"))
			ea := e.span.Attributes()
			queue, ttft, e2e := dbl(t, ea, attrQueue), dbl(t, ea, attrTTFT), dbl(t, ea, attrE2E)
			assert.True(t, queue <= ttft && ttft <= e2e, "queue %.4f ttft %.4f e2e %.4f", queue, ttft, e2e)
			_, hasPrefill := ea.Get(attrPrefill)
			assert.False(t, hasPrefill, "TensorRT-LLM's spans carry no prefill/decode split")
		case EngineSGLang:
			checkSGLangTree(t, engine, client, tr, id, instance[EngineSGLang], tp)
		}
	}
	for _, e := range Engines() {
		assert.Positive(t, seen[e], "no requests on %s", e)
	}
}

// checkVLLMSpan checks an llm_request span against vLLM's shape; parent is the gateway's call.
func checkVLLMSpan(t *testing.T, e receivedSpan, gw ptrace.Span, tr Truth, instance string) {
	t.Helper()
	sp := e.span
	assert.Equal(t, VLLMRequestSpan, sp.Name())
	assert.Equal(t, ptrace.SpanKindServer, sp.Kind())
	assert.Equal(t, VLLMScope, e.scope)
	assert.Equal(t, "vllm", str(e.resource, "service.name"))
	assert.Equal(t, instance, str(e.resource, "service.instance.id"))
	assert.Equal(t, gw.SpanID(), sp.ParentSpanID())
	assert.Equal(t, gw.TraceID(), sp.TraceID())
	a := sp.Attributes()
	assert.Equal(t, tr.RequestID, str(a, AttrRequestID))
	assert.Equal(t, int64(tr.PromptTokens), integer(t, a, attrPromptTokens))
	assert.Equal(t, int64(tr.CompletionTokens), integer(t, a, attrOutputTokens))
	queue, ttft, e2e := dbl(t, a, attrQueue), dbl(t, a, attrTTFT), dbl(t, a, attrE2E)
	prefill, decode, inference := dbl(t, a, attrPrefill), dbl(t, a, attrDecode), dbl(t, a, attrInference)
	assert.LessOrEqual(t, queue+prefill+decode, e2e+1e-9)
	overhead := ttft - queue - prefill
	assert.True(t, overhead > 0 && overhead < 0.02, "ttft %.6f = queue %.6f + prefill %.6f + %.6f", ttft, queue, prefill, overhead)
	assert.InDelta(t, prefill+decode, inference, 1e-9)
	// The span covers arrival to finish: its duration is e2e, inside the gateway span.
	dur := float64(sp.EndTimestamp()-sp.StartTimestamp()) / 1e9
	assert.InDelta(t, e2e, dur, 1e-6)
	assert.Greater(t, sp.StartTimestamp(), gw.StartTimestamp())
	assert.Less(t, sp.EndTimestamp(), gw.EndTimestamp())
	assert.InDelta(t, tr.E2ES, e2e, 1e-5)
	_, err := hex.DecodeString(tr.TraceID)
	assert.NoError(t, err)
}

// TakeTracesByReplica gives each replica the whole traces of its own requests (the gateway's spans with the
// engine's) and nothing of another replica's: what a sidecar per replica receives.
func TestTracesByReplica(t *testing.T) {
	cfg := testConfig(t, "baseline")
	cfg.Engines = Engines()
	f, err := New(cfg)
	require.NoError(t, err)
	eps, err := f.Serve("127.0.0.1", 0)
	require.NoError(t, err)
	defer f.Close()
	byTrace := map[string]string{} // trace id -> instance of the replica that holds it
	for t0 := 10.0; !f.Done(); t0 += 10 {
		f.Advance(t0)
		split := f.TakeTracesByReplica()
		require.Len(t, split, len(eps))
		for i, td := range split {
			for j := 0; j < td.ResourceSpans().Len(); j++ {
				rs := td.ResourceSpans().At(j)
				if inst := str(rs.Resource().Attributes(), "service.instance.id"); inst != "" {
					assert.Equal(t, eps[i].Instance, inst, "replica %d's traces hold only its engine spans", i)
				}
				ss := rs.ScopeSpans().At(0).Spans()
				for k := 0; k < ss.Len(); k++ {
					sp := ss.At(k)
					if sp.Kind() == ptrace.SpanKindClient {
						a := sp.Attributes()
						assert.Equal(t, eps[i].Instance, str(a, "server.address")+":"+strconv.FormatInt(a.AsRaw()["server.port"].(int64), 10),
							"the gateway's call in replica %d's traces goes to that replica", i)
					}
					id := sp.TraceID().String()
					if prev, ok := byTrace[id]; ok {
						assert.Equal(t, prev, eps[i].Instance, "a trace is never split across replicas")
					}
					byTrace[id] = eps[i].Instance
				}
			}
		}
	}
	assert.Empty(t, f.TakeTraces().SpanCount(), "nothing left behind")
	truth := f.GroundTruth()
	require.NotEmpty(t, truth)
	require.Len(t, byTrace, len(truth), "every finished request's trace, once")
	perReplica := map[string]int{}
	for _, tr := range truth {
		assert.Equal(t, tr.Instance, byTrace[tr.TraceID], "request %s", tr.RequestID)
		perReplica[tr.Instance]++
	}
	for _, ep := range eps {
		assert.Positive(t, perReplica[ep.Instance], "requests on %s", ep.Replica)
	}
}

// checkSGLangTree checks one request's SGLang spans against the tree SGLang's tracing writes: the request
// span under the gateway's call, a Tokenizer thread span and one Scheduler thread span per rank under it,
// and the stage slices under the thread spans, each inside the request.
func checkSGLangTree(t *testing.T, engine []receivedSpan, client ptrace.Span, tr Truth, id, instance string, tp int) {
	t.Helper()
	require.Len(t, engine, 1+3+5*tp, "request span, Tokenizer thread and two slices, per rank a Scheduler thread and four slices")
	var root receivedSpan
	byID := map[pcommon.SpanID]receivedSpan{}
	for _, e := range engine {
		byID[e.span.SpanID()] = e
		if e.span.ParentSpanID() == client.SpanID() {
			root = e
		}
	}
	require.NotEqual(t, ptrace.Span{}, root.span, "a request span under the gateway's call")
	assert.Equal(t, SGLangRequestSpan(id), root.span.Name())
	assert.Equal(t, SGLangScope, root.scope)
	assert.Equal(t, "sglang", str(root.resource, "service.name"))
	assert.Equal(t, instance, str(root.resource, "service.instance.id"))
	assert.Equal(t, int64(tr.CachedTokens), integer(t, root.span.Attributes(), AttrCachedTokens))
	_, hasQueue := root.span.Attributes().Get(attrQueue)
	assert.False(t, hasQueue, "SGLang's request span says no time in queue; its slices do")
	threads := map[string]int{}
	slices := map[string]int{}
	for _, e := range engine {
		if e.span.SpanID() == root.span.SpanID() {
			continue
		}
		assert.GreaterOrEqual(t, e.span.StartTimestamp(), root.span.StartTimestamp(), e.span.Name())
		assert.LessOrEqual(t, e.span.EndTimestamp(), root.span.EndTimestamp(), e.span.Name())
		assert.LessOrEqual(t, e.span.StartTimestamp(), e.span.EndTimestamp(), e.span.Name())
		if label, ok := e.span.Attributes().Get("thread_label"); ok {
			assert.Equal(t, root.span.SpanID(), e.span.ParentSpanID(), "thread spans hang from the request span")
			threads[label.Str()]++
			continue
		}
		parent, ok := byID[e.span.ParentSpanID()]
		if assert.True(t, ok, "slice %s hangs from a thread span", e.span.Name()) {
			_, isThread := parent.span.Attributes().Get("thread_label")
			assert.True(t, isThread, e.span.Name())
		}
		slices[e.span.Name()]++
	}
	assert.Equal(t, map[string]int{"Tokenizer": 1, "Scheduler": tp}, threads)
	assert.Equal(t, map[string]int{
		"tokenize": 1, "api_server_dispatch": 1,
		"request_process": tp, "prefill_waiting": tp, "prefill_forward": tp, "decode_forward": tp,
	}, slices)
}
