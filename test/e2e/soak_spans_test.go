package e2e

import (
	"bytes"
	"context"
	endian "encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/schema"
)

// The soak's OTLP senders: batches of vLLM request spans (some under a gateway span that carries the
// tenant), every tenant, model and prompt family new, and now and then a span with an extreme in it.

const (
	soakHugeTenantBytes = 4 << 20  // a tenant name of 4 MiB
	soakHugeLabelBytes  = 64 << 10 // a model name, prompt family, request id and replica of 64 KiB
	// A 4 MiB tenant every 5 s, and at most about 30 in a soak (each is written out again by the exporter).
	soakHugeTenantEvery = 5 * time.Second
	soakHugeTenantsMax  = 30
)

// sentSpan is what the ledger remembers of one span sent.
type sentSpan struct {
	extreme    string // "" for a well-formed span, else the kind of extreme it carries
	request    bool   // an engine request span: it must come out explained
	accepted   bool   // the collector answered 200 (and rejected none) for the batch that carried it
	lateTenant string // the busy tenant that arrived late, when it sent this request
	sentAt     time.Time
}

// Late tenants: a few tenants that appear only late in the soak and then send one request in ten between
// them. They are the busiest tenants of the recent past, so they must win tenant slots of their own from
// the one-off tenants that took every slot early.
const (
	soakLateTenantPrefix = "late-busy-"
	soakLateTenants      = 3
)

// postOutcomes counts what the collector answered.
type postOutcomes struct {
	accepted, refused, partial int
	// failed: neither 200 nor connection refused (a timeout, a dropped connection, an error status), with
	// when it happened, to tell a restart's in-flight requests from a collector that stopped answering.
	failed []postFailure
}

type postFailure struct {
	at  time.Time
	err string
}

// spanLedger records every span sent, by span id.
type spanLedger struct {
	mu    sync.Mutex
	spans map[pcommon.SpanID]*sentSpan
	posts postOutcomes
	// firstExtremeAccepted is when the collector first accepted a batch with an extreme span.
	firstExtremeAccepted time.Time
	// acceptedAfterExtreme counts the well-formed request spans accepted after that.
	acceptedAfterExtreme int
	extremesSent         map[string]int
}

func newSpanLedger() *spanLedger {
	return &spanLedger{spans: map[pcommon.SpanID]*sentSpan{}, extremesSent: map[string]int{}}
}

// spanSender posts batches to the collector's OTLP/HTTP receiver from its own seeded random source.
type spanSender struct {
	id        int
	rng       *rand.Rand
	url       string
	client    *http.Client
	ledger    *spanLedger
	instances []string // the engines' addresses: the service.instance.id of the spans' resources
	extremes  soakExtremeSet
	lateFrom  time.Time // when the late tenants start sending
	hugeEvery time.Duration
	seq       uint64
}

func newSpanSender(id int, seed int64, otlpAddr string, instances []string, extremes soakExtremeSet, lateFrom time.Time,
	duration time.Duration, ledger *spanLedger,
) *spanSender {
	return &spanSender{
		id: id, rng: rand.New(rand.NewSource(seed + int64(id))), url: "http://" + otlpAddr + "/v1/traces",
		client: &http.Client{Timeout: 15 * time.Second}, ledger: ledger, instances: instances, extremes: extremes, lateFrom: lateFrom,
		hugeEvery: max(soakHugeTenantEvery, duration/soakHugeTenantsMax),
	}
}

// soakExtremeSet is which extremes the senders mix in: all by default; SERVESCOPE_SOAK_EXTREMES names a
// subset (comma-separated, or "none"), to tell which input a failure comes from.
type soakExtremeSet struct {
	kinds       []soakExtreme
	hugeTenants bool
}

func selectSoakExtremes(spec string) (soakExtremeSet, error) {
	if spec == "" {
		return soakExtremeSet{kinds: soakExtremeKinds, hugeTenants: true}, nil
	}
	var set soakExtremeSet
	if spec == "none" {
		return set, nil
	}
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		if name == hugeTenantExtreme.name {
			set.hugeTenants = true
			continue
		}
		i := slices.IndexFunc(soakExtremeKinds, func(x soakExtreme) bool { return x.name == name })
		if i < 0 {
			return set, fmt.Errorf("SERVESCOPE_SOAK_EXTREMES: no extreme %q (there are %s, %s)", name, hugeTenantExtreme.name, soakExtremeNames())
		}
		set.kinds = append(set.kinds, soakExtremeKinds[i])
	}
	return set, nil
}

func soakExtremeNames() string {
	var names []string
	for _, x := range soakExtremeKinds {
		names = append(names, x.name)
	}
	return strings.Join(names, ", ")
}

// run posts a batch every interval until ctx ends.
func (s *spanSender) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastHuge time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		huge := s.id == 0 && s.extremes.hugeTenants && time.Since(lastHuge) >= s.hugeEvery
		if huge {
			lastHuge = time.Now()
		}
		td, spans := s.batch(huge)
		s.post(ctx, td, spans)
	}
}

func (s *spanSender) nextSpanID() pcommon.SpanID {
	s.seq++
	var id pcommon.SpanID
	// The sender in the first byte, a sequence in the rest: unique across senders and runs.
	endian.BigEndian.PutUint64(id[:], s.seq)
	id[0] = byte(0xa0 + s.id)
	return id
}

func (s *spanSender) traceID() pcommon.TraceID {
	var id pcommon.TraceID
	_, _ = s.rng.Read(id[:])
	id[0] |= 1 // never all zero
	return id
}

// batch builds one request to the collector: 10 to 30 requests across the engines, and with a chance of one
// in four one span with an extreme (always, with a 4 MiB tenant name, when huge is set).
func (s *spanSender) batch(huge bool) (ptrace.Traces, map[pcommon.SpanID]*sentSpan) {
	td := ptrace.NewTraces()
	spans := map[pcommon.SpanID]*sentSpan{}
	gateway := td.ResourceSpans().AppendEmpty()
	gateway.Resource().Attributes().PutStr("service.name", "gateway")
	gatewaySpans := gateway.ScopeSpans().AppendEmpty().Spans()
	byInstance := map[string]ptrace.SpanSlice{}
	engineSpans := func(instance string) ptrace.SpanSlice {
		if ss, ok := byInstance[instance]; ok {
			return ss
		}
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "vllm")
		rs.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, instance)
		scope := rs.ScopeSpans().AppendEmpty()
		scope.Scope().SetName("vllm.llm_engine")
		byInstance[instance] = scope.Spans()
		return scope.Spans()
	}
	n := 10 + s.rng.Intn(21)
	now := time.Now()
	late := now.After(s.lateFrom)
	for range n {
		instance := s.instances[s.rng.Intn(len(s.instances))]
		sp := engineSpans(instance).AppendEmpty()
		id, lateTenant := s.wellFormedRequest(sp, late)
		spans[id] = &sentSpan{request: true, lateTenant: lateTenant, sentAt: now}
		if s.rng.Intn(2) == 0 {
			// Under a gateway span: the tenant and prompt family are on the parent, not the engine span.
			gw := gatewaySpans.AppendEmpty()
			gwID := s.nextSpanID()
			s.gatewaySpan(gw, sp, gwID)
			spans[gwID] = &sentSpan{sentAt: now}
		}
	}
	kinds := s.extremes.kinds
	switch {
	case huge:
		kinds = []soakExtreme{hugeTenantExtreme}
	case s.rng.Intn(4) != 0:
		kinds = nil
	}
	if len(kinds) > 0 {
		x := kinds[s.rng.Intn(len(kinds))]
		rs := td.ResourceSpans().AppendEmpty()
		res := rs.Resource().Attributes()
		res.PutStr("service.name", "vllm")
		res.PutStr(schema.AttrServiceInstanceID, s.instances[s.rng.Intn(len(s.instances))])
		scope := rs.ScopeSpans().AppendEmpty()
		scope.Scope().SetName("vllm.llm_engine")
		sp := scope.Spans().AppendEmpty()
		id, _ := s.wellFormedRequest(sp, false)
		x.apply(sp, res, s.rng)
		spans[id] = &sentSpan{extreme: x.name, request: true, sentAt: now}
	}
	return td, spans
}

// wellFormedRequest fills an llm_request span as vLLM writes it, ending now, with a tenant, model and prompt
// family never seen before (one request in five from a handful of regular tenants on the engine's model;
// with late set, one in ten from a late tenant, which it returns).
func (s *spanSender) wellFormedRequest(sp ptrace.Span, late bool) (pcommon.SpanID, string) {
	id := s.nextSpanID()
	sp.SetTraceID(s.traceID())
	sp.SetSpanID(id)
	sp.SetName("llm_request")
	sp.SetKind(ptrace.SpanKindServer)
	queue := 0.002 + s.rng.ExpFloat64()*0.15
	prefill := 0.01 + s.rng.Float64()*0.3
	if s.rng.Intn(7) == 0 { // slow against the 1 s TTFT SLO: an explanation and a log record
		queue += 1 + s.rng.Float64()*2
	}
	prompt := 16 + s.rng.Intn(4000)
	generated := 1 + s.rng.Intn(600)
	decode := float64(generated-1) * (0.008 + s.rng.Float64()*0.02)
	other := 0.001 + s.rng.Float64()*0.01
	e2e := queue + prefill + decode + other
	end := time.Now().Add(-time.Duration(s.rng.Intn(100)) * time.Millisecond)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(end.Add(-time.Duration(e2e * float64(time.Second)))))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	a := sp.Attributes()
	a.PutDouble(schema.AttrGenAILatencyTimeInQueue, queue)
	a.PutDouble(schema.AttrGenAILatencyTimeToFirstToken, queue+prefill+other/2)
	a.PutDouble(schema.AttrGenAILatencyE2e, e2e)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelPrefill, prefill)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelDecode, decode)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelInference, prefill+decode)
	a.PutInt(schema.AttrGenAIUsagePromptTokens, int64(prompt))
	a.PutInt(schema.AttrGenAIUsageCompletionTokens, int64(generated))
	if s.rng.Intn(3) == 0 { // SGLang-style cached-token counts on some: the prompt-token metric by family
		a.PutInt(schema.AttrGenAIUsageCachedTokens, int64(s.rng.Intn(prompt)))
	}
	a.PutStr(schema.AttrGenAIRequestID, fmt.Sprintf("cmpl-%d-%d", s.id, s.seq))
	lateTenant := ""
	switch pick := s.rng.Intn(10); {
	case late && pick == 0:
		lateTenant = fmt.Sprintf("%s%d", soakLateTenantPrefix, s.rng.Intn(soakLateTenants))
		a.PutStr(schema.AttrGenAIRequestModel, soakEngineModel)
		a.PutStr(schema.AttrLLMTenant, lateTenant)
	case pick <= 2:
		a.PutStr(schema.AttrGenAIRequestModel, soakEngineModel)
		a.PutStr(schema.AttrLLMTenant, fmt.Sprintf("regular-%d", s.rng.Intn(5)))
	default:
		a.PutStr(schema.AttrGenAIRequestModel, fmt.Sprintf("model-%d-%d", s.id, s.seq))
		a.PutStr(schema.AttrLLMTenant, fmt.Sprintf("tenant-%d-%d", s.id, s.seq))
	}
	a.PutStr(schema.AttrLLMPromptFamily, fmt.Sprintf("family-%d-%d", s.id, s.seq))
	return id, lateTenant
}

// gatewaySpan makes gw the parent of the engine span and moves the tenant and prompt family onto it (the
// gateway's keys), so the connector has to find them one level up.
func (s *spanSender) gatewaySpan(gw, engine ptrace.Span, id pcommon.SpanID) {
	gw.SetTraceID(engine.TraceID())
	gw.SetSpanID(id)
	gw.SetName("POST /v1/completions")
	gw.SetKind(ptrace.SpanKindServer)
	gw.SetStartTimestamp(engine.StartTimestamp() - 2e6)
	gw.SetEndTimestamp(engine.EndTimestamp() + 2e6)
	engine.SetParentSpanID(id)
	ea, ga := engine.Attributes(), gw.Attributes()
	for from, to := range map[string]string{schema.AttrLLMTenant: "tenant.id", schema.AttrLLMPromptFamily: schema.AttrLLMPromptFamily} {
		if v, ok := ea.Get(from); ok {
			ga.PutStr(to, v.Str())
			ea.Remove(from)
		}
	}
	ga.PutStr("http.request.method", "POST")
	ga.PutInt("http.response.status_code", 200)
	if v, ok := ea.Get(schema.AttrGenAIRequestID); ok {
		ga.PutStr(schema.AttrGenAIRequestID, v.Str())
	}
}

// post sends one batch and records, per span, whether the collector accepted it.
func (s *spanSender) post(ctx context.Context, td ptrace.Traces, spans map[pcommon.SpanID]*sentSpan) {
	accepted, outcome := false, ""
	if body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto(); err != nil {
		outcome = "marshalling the batch: " + err.Error()
	} else {
		accepted, outcome = s.send(ctx, body)
	}
	l := s.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	hasExtreme := false
	for id, sp := range spans {
		sp.accepted = accepted
		l.spans[id] = sp
		if sp.extreme != "" {
			l.extremesSent[sp.extreme]++
			hasExtreme = true
		}
	}
	switch outcome {
	case "accepted":
		l.posts.accepted++
		if !l.firstExtremeAccepted.IsZero() {
			for _, sp := range spans {
				if sp.request && sp.extreme == "" {
					l.acceptedAfterExtreme++
				}
			}
		}
		if hasExtreme && l.firstExtremeAccepted.IsZero() {
			l.firstExtremeAccepted = time.Now()
		}
	case "refused":
		l.posts.refused++
	case "partial":
		l.posts.partial++
	case "cancelled":
	default:
		l.posts.failed = append(l.posts.failed, postFailure{at: time.Now(), err: outcome})
	}
}

// send returns whether every span of the body was accepted, and the outcome in a word (or the error).
func (s *spanSender) send(ctx context.Context, body []byte) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := s.client.Do(req)
	switch {
	case err != nil && ctx.Err() != nil:
		return false, "cancelled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return false, "refused" // the collector is restarting
	case err != nil:
		return false, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	out := ptraceotlp.NewExportResponse()
	if err := out.UnmarshalProto(raw); err == nil && out.PartialSuccess().RejectedSpans() > 0 {
		return false, "partial"
	}
	return true, "accepted"
}

// soakExtreme is one way a span can be broken: apply rewrites a well-formed request span.
type soakExtreme struct {
	name  string
	apply func(sp ptrace.Span, res pcommon.Map, rng *rand.Rand)
}

var latencyKeys = []string{
	schema.AttrGenAILatencyTimeInQueue, schema.AttrGenAILatencyTimeToFirstToken, schema.AttrGenAILatencyE2e,
	schema.AttrGenAILatencyTimeInModelPrefill, schema.AttrGenAILatencyTimeInModelDecode, schema.AttrGenAILatencyTimeInModelInference,
}

var tokenKeys = []string{schema.AttrGenAIUsagePromptTokens, schema.AttrGenAIUsageCompletionTokens, schema.AttrGenAIUsageCachedTokens}

func putAll(a pcommon.Map, keys []string, v float64) {
	for _, k := range keys {
		a.PutDouble(k, v)
	}
}

var hugeTenantExtreme = soakExtreme{"huge_tenant", func(sp ptrace.Span, _ pcommon.Map, rng *rand.Rand) {
	// A different 4 MiB name each time: every one would be a new tenant.
	sp.Attributes().PutStr(schema.AttrLLMTenant, fmt.Sprintf("%08x", rng.Uint32())+strings.Repeat("t", soakHugeTenantBytes-8))
}}

var soakExtremeKinds = []soakExtreme{
	{"nan", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		putAll(sp.Attributes(), latencyKeys, math.NaN())
		putAll(sp.Attributes(), tokenKeys, math.NaN())
	}},
	{"inf", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		a := sp.Attributes()
		putAll(a, latencyKeys, math.Inf(1))
		a.PutDouble(schema.AttrGenAILatencyTimeInQueue, math.Inf(-1))
		putAll(a, tokenKeys, math.Inf(1))
	}},
	{"1e308", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		putAll(sp.Attributes(), latencyKeys, 1e308)
		putAll(sp.Attributes(), tokenKeys, 1e308)
	}},
	{"huge_e2e_small_phases", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		// Plausible phases, an e2e and a decode that overflow any sum or integer conversion.
		sp.Attributes().PutDouble(schema.AttrGenAILatencyE2e, math.MaxFloat64)
		sp.Attributes().PutDouble(schema.AttrGenAILatencyTimeInModelDecode, math.MaxFloat64/2)
		sp.Attributes().PutInt(schema.AttrGenAIUsageCompletionTokens, 2)
	}},
	{"negative", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		putAll(sp.Attributes(), latencyKeys, -1)
		sp.Attributes().PutDouble(schema.AttrGenAILatencyE2e, -1e308)
		for _, k := range tokenKeys {
			sp.Attributes().PutInt(k, -5)
		}
	}},
	{"max_int_tokens", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		for _, k := range tokenKeys {
			sp.Attributes().PutInt(k, math.MaxInt64)
		}
	}},
	{"min_int_tokens", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		for _, k := range tokenKeys {
			sp.Attributes().PutInt(k, math.MinInt64)
		}
	}},
	{"type_swaps", func(sp ptrace.Span, _ pcommon.Map, rng *rand.Rand) {
		a := sp.Attributes()
		for i, k := range latencyKeys {
			switch (i + rng.Intn(3)) % 3 {
			case 0:
				a.PutStr(k, "0.25")
			case 1:
				a.PutInt(k, 3)
			default:
				a.PutBool(k, true)
			}
		}
		a.PutDouble(schema.AttrGenAIUsagePromptTokens, 512.75)
		a.PutStr(schema.AttrGenAIUsageCompletionTokens, "many")
		a.PutEmptyBytes(schema.AttrGenAIUsageCachedTokens).FromRaw([]byte{0xff, 0x00})
		a.PutInt(schema.AttrLLMTenant, 42)
		a.PutBool(schema.AttrGenAIRequestModel, false)
		a.PutEmptySlice(schema.AttrLLMPromptFamily).AppendEmpty().SetStr("nested")
		a.PutDouble(schema.AttrGenAIRequestID, math.NaN())
	}},
	{"huge_labels", func(sp ptrace.Span, res pcommon.Map, rng *rand.Rand) {
		long := func(c string) string {
			return fmt.Sprintf("%08x", rng.Uint32()) + strings.Repeat(c, soakHugeLabelBytes-8)
		}
		a := sp.Attributes()
		a.PutStr(schema.AttrGenAIRequestModel, long("m"))
		a.PutStr(schema.AttrLLMPromptFamily, long("f"))
		a.PutStr(schema.AttrGenAIRequestID, long("r"))
		a.PutInt(schema.AttrGenAIUsageCachedTokens, 10)
		res.PutStr(schema.AttrServiceInstanceID, long("i"))
	}},
	{"timestamps", func(sp ptrace.Span, _ pcommon.Map, rng *rand.Rand) {
		switch rng.Intn(3) {
		case 0: // no start, an end at the largest timestamp
			sp.SetStartTimestamp(0)
			sp.SetEndTimestamp(pcommon.Timestamp(math.MaxUint64))
		case 1: // ends before it starts
			sp.SetStartTimestamp(sp.EndTimestamp() + pcommon.Timestamp(time.Hour))
		default: // no timestamps at all
			sp.SetStartTimestamp(0)
			sp.SetEndTimestamp(0)
		}
	}},
	{"subnormal", func(sp ptrace.Span, _ pcommon.Map, _ *rand.Rand) {
		putAll(sp.Attributes(), latencyKeys, 5e-324)
		sp.Attributes().PutDouble(schema.AttrGenAILatencyTimeInQueue, math.Copysign(0, -1))
		sp.Attributes().PutInt(schema.AttrGenAIUsageCompletionTokens, 1)
	}},
}
