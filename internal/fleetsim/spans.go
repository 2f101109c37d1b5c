package fleetsim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/schema"
)

// Span attribute keys. The engine spans use the engines' own keys (vLLM's and SGLang's SpanAttributes,
// which predate the GenAI semantic conventions); the gateway's carry the tenant and the prompt family.
const (
	AttrTenant        = "tenant.id"
	AttrPromptFamily  = "llm.prompt.family"
	AttrRequestID     = "gen_ai.request.id"
	AttrCachedTokens  = "gen_ai.usage.cached_tokens"
	attrPromptTokens  = "gen_ai.usage.prompt_tokens"
	attrOutputTokens  = "gen_ai.usage.completion_tokens"
	attrQueue         = "gen_ai.latency.time_in_queue"
	attrTTFT          = "gen_ai.latency.time_to_first_token"
	attrE2E           = "gen_ai.latency.e2e"
	attrPrefill       = "gen_ai.latency.time_in_model_prefill"
	attrDecode        = "gen_ai.latency.time_in_model_decode"
	attrInference     = "gen_ai.latency.time_in_model_inference"
	GatewayService    = "gateway"
	GatewaySpanName   = "POST /v1/completions"
	VLLMRequestSpan   = "llm_request"
	VLLMScope         = "vllm.llm_engine"
	SGLangScope       = "sglang server"
	TRTLLMScope       = "tensorrt_llm"
	TRTLLMServiceName = "trt-server"
)

// TakeTraces returns the spans of the requests finished since the last call, as OTLP data. Per request,
// in one trace: the gateway's SERVER span (service gateway, with the tenant), its CLIENT span for the call
// to the replica (server.address and server.port of the replica), and under that the engine's request span
// (service vllm / sglang / trt-server, service.instance.id = the replica's endpoint). llama.cpp has no
// tracing, so its requests have only the gateway's spans.
func (f *Fleet) TakeTraces() ptrace.Traces {
	f.mu.Lock()
	pending := f.pending
	f.pending = nil
	f.mu.Unlock()
	return f.buildTraces(pending)
}

// TakeTracesByReplica is TakeTraces split by the replica that served each request: element i holds the
// traces of replica i's requests (the gateway's two spans and the engine's, as TakeTraces builds them), for
// a harness that sends each replica's spans to the collector next to that replica. A replica with no
// request finished since the last call gets empty traces.
func (f *Fleet) TakeTracesByReplica() []ptrace.Traces {
	f.mu.Lock()
	pending := f.pending
	f.pending = nil
	f.mu.Unlock()
	byReplica := make([][]*request, len(f.replicas))
	for _, r := range pending {
		byReplica[r.replica.idx] = append(byReplica[r.replica.idx], r)
	}
	out := make([]ptrace.Traces, len(byReplica))
	for i, reqs := range byReplica {
		out[i] = f.buildTraces(reqs)
	}
	return out
}

func (f *Fleet) ts(t float64) pcommon.Timestamp { return pcommon.NewTimestampFromTime(f.wall(t)) }

func (f *Fleet) buildTraces(reqs []*request) ptrace.Traces {
	td := ptrace.NewTraces()
	if len(reqs) == 0 {
		return td
	}
	gw := td.ResourceSpans().AppendEmpty()
	gw.Resource().Attributes().PutStr("service.name", GatewayService)
	gwSpans := gw.ScopeSpans().AppendEmpty()
	gwSpans.Scope().SetName("servescope-sim/gateway")
	engines := map[*replica]ptrace.SpanSlice{}
	for _, r := range reqs {
		f.gatewaySpan(gwSpans.Spans().AppendEmpty(), r)
		f.clientSpan(gwSpans.Spans().AppendEmpty(), r)
		rp := r.replica
		if rp.engine == EngineLlamaCpp {
			continue
		}
		spans, ok := engines[rp]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			attrs := rs.Resource().Attributes()
			attrs.PutStr("service.name", map[string]string{EngineVLLM: "vllm", EngineSGLang: "sglang", EngineTRTLLM: TRTLLMServiceName}[rp.engine])
			attrs.PutStr(schema.AttrServiceInstanceID, rp.instance)
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(map[string]string{EngineVLLM: VLLMScope, EngineSGLang: SGLangScope, EngineTRTLLM: TRTLLMScope}[rp.engine])
			spans = ss.Spans()
			engines[rp] = spans
		}
		switch rp.engine {
		case EngineVLLM:
			f.vllmSpan(spans.AppendEmpty(), r)
		case EngineSGLang:
			f.sglangSpans(spans, r)
		case EngineTRTLLM:
			f.trtllmSpan(spans.AppendEmpty(), r)
		}
	}
	return td
}

func (f *Fleet) gatewaySpan(sp ptrace.Span, r *request) {
	sp.SetTraceID(r.traceID)
	sp.SetSpanID(r.gatewaySpan)
	sp.SetName(GatewaySpanName)
	sp.SetKind(ptrace.SpanKindServer)
	sp.SetStartTimestamp(f.ts(r.gatewayStart))
	sp.SetEndTimestamp(f.ts(r.lastToken + engineToGateway))
	a := sp.Attributes()
	a.PutStr("http.request.method", "POST")
	a.PutStr("url.path", "/v1/completions")
	a.PutInt("http.response.status_code", 200)
	a.PutStr(AttrTenant, r.tenant)
	a.PutStr(AttrPromptFamily, r.family)
	a.PutStr(AttrRequestID, r.id)
	a.PutStr("gen_ai.request.model", r.replica.f.cfg.Model.Name)
	// The usage the engine returned (OpenAI usage with prompt_tokens_details.cached_tokens), as a gateway
	// that logs it would record it.
	a.PutInt(attrPromptTokens, int64(r.prompt))
	a.PutInt(attrOutputTokens, int64(r.generated))
	a.PutInt(AttrCachedTokens, int64(r.cached))
}

// clientSpan is the gateway's call to the replica it routed the request to.
func (f *Fleet) clientSpan(sp ptrace.Span, r *request) {
	sp.SetTraceID(r.traceID)
	sp.SetSpanID(r.clientSpan)
	sp.SetParentSpanID(r.gatewaySpan)
	sp.SetName("POST")
	sp.SetKind(ptrace.SpanKindClient)
	sp.SetStartTimestamp(f.ts(r.gatewayStart + gatewayToEngine/2))
	sp.SetEndTimestamp(f.ts(r.lastToken + engineToGateway/2))
	a := sp.Attributes()
	a.PutStr("http.request.method", "POST")
	host, port, err := net.SplitHostPort(r.replica.instance)
	if err != nil { // not served: the replica's name stands in
		host, port = r.replica.instance, "0"
	}
	p, _ := strconv.Atoi(port)
	a.PutStr("server.address", host)
	a.PutInt("server.port", int64(p))
	a.PutStr("url.full", "http://"+r.replica.instance+"/v1/completions")
	a.PutInt("http.response.status_code", 200)
	a.PutStr(AttrRequestID, r.id)
	// The engine span's direct parent carries the tenant too, so a consumer that looks one level up finds it.
	a.PutStr(AttrTenant, r.tenant)
	a.PutStr(AttrPromptFamily, r.family)
}

// phaseAttrs are vLLM's request intervals (RequestStateStats): arrival at the frontend, queued in the
// engine core, first scheduled, first and last token.
func phaseAttrs(a pcommon.Map, r *request) {
	a.PutDouble(attrQueue, r.scheduled-r.queued)
	a.PutDouble(attrTTFT, r.firstToken-r.arrival)
	a.PutDouble(attrE2E, r.lastToken-r.arrival)
	a.PutDouble(attrPrefill, r.firstToken-r.scheduled)
	a.PutDouble(attrDecode, r.lastToken-r.firstToken)
	a.PutDouble(attrInference, r.lastToken-r.scheduled)
}

func (f *Fleet) vllmSpan(sp ptrace.Span, r *request) {
	sp.SetTraceID(r.traceID)
	sp.SetSpanID(r.engineSpan)
	sp.SetParentSpanID(r.clientSpan)
	sp.SetName(VLLMRequestSpan)
	sp.SetKind(ptrace.SpanKindServer)
	sp.SetStartTimestamp(f.ts(r.arrival))
	sp.SetEndTimestamp(f.ts(r.lastToken))
	a := sp.Attributes()
	phaseAttrs(a, r)
	a.PutInt(attrPromptTokens, int64(r.prompt))
	a.PutInt(attrOutputTokens, int64(r.generated))
	a.PutStr(AttrRequestID, r.id)
	a.PutDouble("gen_ai.request.top_p", 0.95)
	a.PutInt("gen_ai.request.max_tokens", int64(r.maxTokens))
	a.PutInt("gen_ai.request.n", 1)
	a.PutDouble("gen_ai.request.temperature", 0.7)
}

// SGLangRequestSpan is the name SGLang gives a unified request's span: its role (empty when unified),
// "Req" and the first eight characters of the rid.
func SGLangRequestSpan(id string) string { return " Req " + id[:8] }

// sglangSpans writes the tree SGLang's tracing writes at --trace-level 2 (see the connector's
// testdata/sglang_trees/NOTE.md): the request span with the tokenizer's finish attributes (usage, cached
// tokens, and gen_ai.latency.* from its own clock: no time in queue, prefill from the dispatch to the first
// token), a Tokenizer thread span under it with tokenize and api_server_dispatch, and one Scheduler thread
// span per tensor-parallel rank with request_process, prefill_waiting, prefill_forward and decode_forward
// (from the first token to the last). Level 3's decode_loop per step is left out: one span per token.
func (f *Fleet) sglangSpans(spans ptrace.SpanSlice, r *request) {
	root := spans.AppendEmpty()
	root.SetTraceID(r.traceID)
	root.SetSpanID(r.engineSpan)
	root.SetParentSpanID(r.clientSpan)
	root.SetName(SGLangRequestSpan(r.id))
	root.SetKind(ptrace.SpanKindInternal)
	root.SetStartTimestamp(f.ts(r.arrival))
	root.SetEndTimestamp(f.ts(r.lastToken))
	a := root.Attributes()
	a.PutStr("rid", r.id)
	a.PutStr("module", "sglang::request")
	// The tokenizer's view: dispatched to the scheduler when the request entered its queue.
	a.PutDouble(attrTTFT, r.firstToken-r.arrival)
	a.PutDouble(attrE2E, r.lastToken-r.arrival)
	a.PutDouble(attrPrefill, r.firstToken-r.queued)
	a.PutDouble(attrDecode, r.lastToken-r.firstToken)
	a.PutDouble(attrInference, r.lastToken-r.queued)
	a.PutInt(attrPromptTokens, int64(r.prompt))
	a.PutInt(attrOutputTokens, int64(r.generated))
	a.PutInt(AttrCachedTokens, int64(r.cached))
	a.PutStr(AttrRequestID, r.id)
	a.PutInt("gen_ai.request.max_tokens", int64(r.maxTokens))
	a.PutStr("gen_ai.response.model", r.replica.f.cfg.Model.Name)
	a.PutStr("gen_ai.response.finish_reasons", r.finishReason)

	seq := byte(0)
	child := func(parent pcommon.SpanID, name string, start, end float64) ptrace.Span {
		seq++
		sp := spans.AppendEmpty()
		sp.SetTraceID(r.traceID)
		id := r.engineSpan
		id[7] ^= seq
		id[6] ^= 0x5a
		sp.SetSpanID(id)
		sp.SetParentSpanID(parent)
		sp.SetName(name)
		sp.SetKind(ptrace.SpanKindInternal)
		sp.SetStartTimestamp(f.ts(start))
		sp.SetEndTimestamp(f.ts(end))
		return sp
	}
	thread := func(label string, rank, pid int, start float64) ptrace.Span {
		name := label
		if rank >= 0 {
			name += fmt.Sprintf(" [TP %d] ", rank)
		}
		sp := child(r.engineSpan, name+fmt.Sprintf("(host:%s | pid:%d)", sglangHost, pid), start, r.lastToken)
		ta := sp.Attributes()
		if rank >= 0 {
			ta.PutInt("tp_rank", int64(rank))
		}
		ta.PutStr("host_id", sglangHost)
		ta.PutInt("pid", int64(pid))
		ta.PutStr("thread_label", label)
		return sp
	}
	// The tokenizer's part before the scheduler has the request; the scheduler's request_process ends as
	// the request enters the waiting queue.
	hop := min(0.0002, (r.queued-r.arrival)/4)
	tok := thread("Tokenizer", -1, 1000, r.arrival)
	mid := r.arrival + (r.queued-hop-r.arrival)/2
	child(tok.SpanID(), "tokenize", r.arrival, mid)
	child(tok.SpanID(), "api_server_dispatch", mid, r.queued-hop)
	for rank := range r.replica.tp {
		sch := thread("Scheduler", rank, 1001+rank, r.queued-hop)
		for _, st := range []struct {
			name       string
			start, end float64
		}{
			{"request_process", r.queued - hop, r.queued},
			{"prefill_waiting", r.queued, r.scheduled},
			{"prefill_forward", r.scheduled, r.firstToken},
			{"decode_forward", r.firstToken, r.lastToken},
		} {
			child(sch.SpanID(), st.name, st.start, st.end)
		}
	}
}

// sglangHost is the first eight characters of the host id SGLang puts in thread span names.
const sglangHost = "5e1a7c3d"

// trtllmSpan has what TensorRT-LLM's tracing sets: queue, TTFT and e2e latencies and usage, no prefill or
// decode split.
func (f *Fleet) trtllmSpan(sp ptrace.Span, r *request) {
	sp.SetTraceID(r.traceID)
	sp.SetSpanID(r.engineSpan)
	sp.SetParentSpanID(r.clientSpan)
	sp.SetName(VLLMRequestSpan)
	sp.SetKind(ptrace.SpanKindServer)
	sp.SetStartTimestamp(f.ts(r.arrival))
	sp.SetEndTimestamp(f.ts(r.lastToken))
	a := sp.Attributes()
	a.PutDouble(attrQueue, r.scheduled-r.arrival)
	a.PutDouble(attrTTFT, r.firstToken-r.arrival)
	a.PutDouble(attrE2E, r.lastToken-r.arrival)
	a.PutInt(attrPromptTokens, int64(r.prompt))
	a.PutInt(attrOutputTokens, int64(r.generated))
	a.PutStr(AttrRequestID, r.id)
	a.PutInt("gen_ai.request.max_tokens", int64(r.maxTokens))
	a.PutStr("gen_ai.response.finish_reasons", r.finishReason)
}

// OTLPExporter sends traces over OTLP/HTTP (protobuf) to a collector's otlp receiver.
type OTLPExporter struct {
	url    string
	client *http.Client
}

// NewOTLPExporter takes the receiver's base endpoint (http://host:4318, or host:4318) or the full traces
// URL (…/v1/traces).
func NewOTLPExporter(endpoint string) *OTLPExporter {
	u := endpoint
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if !strings.HasSuffix(u, "/v1/traces") {
		u = strings.TrimRight(u, "/") + "/v1/traces"
	}
	return &OTLPExporter{url: u, client: &http.Client{Timeout: 5 * time.Second}}
}

// Export sends one batch.
func (e *OTLPExporter) Export(ctx context.Context, td ptrace.Traces) error {
	if td.SpanCount() == 0 {
		return nil
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) //nolint:errcheck // draining for reuse
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otlp export to %s: %s", e.url, resp.Status)
	}
	return nil
}
