package llmrootcauseconnector

import (
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/schema"
)

// request is one engine request span, read into numbers. NaN marks what the span does not say.
type request struct {
	span     ptrace.Span
	resource pcommon.Map

	replicaKey string // from the span's resource, before resolving against the state
	replica    string // the replica in the state it joined, "" when none
	model      string
	engine     string
	// own is the tenant and prompt family the request span and its resource name themselves (cut to
	// max_label_length), read once when the span is collected; resolve fills what they leave out.
	own    who
	tenant string // as the request's spans name it (cut to max_label_length)
	family string
	// tenantSlot and familySlot are the names metrics and baselines use: the tenant's own or `_other`, the
	// family's own or "" (see core.tenantSlot).
	tenantSlot string
	familySlot string
	modelSlot  string // the model's own baseline or `_other`'s (see core.modelSlot)
	requestID  string

	start, end int64 // unix ns: arrival and finish

	queue, prefill, decode, other, ttft, tpot, e2e float64 // seconds
	promptTokens, genTokens, cachedTokens          float64

	tree *treeRef // the request's span tree, for an engine whose request is one (SGLang); nil otherwise
}

// isEngineRequest tells the request spans we explain (vLLM's llm_request and the spans that copy its keys:
// SGLang, TensorRT-LLM, the tensorrt_llm receiver's) from everything else, which passes through untouched.
func isEngineRequest(span ptrace.Span) bool {
	attrs := span.Attributes()
	_, e2e := attrs.Get(schema.AttrGenAILatencyE2e)
	_, queue := attrs.Get(schema.AttrGenAILatencyTimeInQueue)
	_, ttft := attrs.Get(schema.AttrGenAILatencyTimeToFirstToken)
	return e2e || queue || ttft
}

// number is a duration or a count as the explanation reads it. Negative and infinite values are not durations
// or counts: they read as unknown, like a missing attribute, so one broken field costs its evidence and
// nothing else.
func number(f float64) float64 {
	if f < 0 || math.IsInf(f, 0) {
		return math.NaN()
	}
	return f
}

// requestBounds are what one physical request can be; a span outside them is not a request we can explain.
type requestBounds struct {
	maxTokens  float64
	maxSeconds float64
}

// The numbers of an engine span that the explanation reads, in the order violation checks them.
const (
	fieldQueue = iota
	fieldPrefill
	fieldDecode
	fieldInference
	fieldTTFT
	fieldE2E
	fieldPromptTokens
	fieldCompletionTokens
	fieldCachedTokens
	numFields
)

// The strings it reads, numbered after the numbers so that one bit set tells which keys the span has.
const (
	textRequestID = numFields + iota
	textResponseModel
	textRequestModel
)

// Every key has its bit in spanFields.seen: one key too many and this constant overflows, so the build fails
// instead of a bit silently wrapping.
const _ uint16 = 1 << textRequestModel

// boundedAttributes are those numbers' keys; the first fieldPromptTokens are seconds, the rest counts.
var boundedAttributes = [numFields]string{
	fieldQueue:            schema.AttrGenAILatencyTimeInQueue,
	fieldPrefill:          schema.AttrGenAILatencyTimeInModelPrefill,
	fieldDecode:           schema.AttrGenAILatencyTimeInModelDecode,
	fieldInference:        schema.AttrGenAILatencyTimeInModelInference,
	fieldTTFT:             schema.AttrGenAILatencyTimeToFirstToken,
	fieldE2E:              schema.AttrGenAILatencyE2e,
	fieldPromptTokens:     schema.AttrGenAIUsagePromptTokens,
	fieldCompletionTokens: schema.AttrGenAIUsageCompletionTokens,
	fieldCachedTokens:     schema.AttrGenAIUsageCachedTokens,
}

// spanFields are the attributes of an engine span the explanation reads, found in one pass over the span's
// attributes: a lookup per key scans them once for each of the dozen keys, for every request.
type spanFields struct {
	// numbers are as the span says them; NaN where missing or not a number.
	numbers [numFields]float64
	// seen says which keys the span has, numbers or not, strings too (the first of a key counts, as with
	// Get); numeric, which of the numbers' keys hold numbers (double or int).
	seen, numeric uint16

	requestID, responseModel, requestModel string
}

func readSpanFields(attrs pcommon.Map) spanFields {
	var f spanFields
	for i := range f.numbers {
		f.numbers[i] = math.NaN()
	}
	for k, v := range attrs.All() {
		i, text := -1, (*string)(nil)
		// A switch on the key rather than a map or a loop over boundedAttributes: most of a span's attributes
		// are none of these, and the switch turns each of them away in a few comparisons.
		switch k {
		case schema.AttrGenAILatencyTimeInQueue:
			i = fieldQueue
		case schema.AttrGenAILatencyTimeInModelPrefill:
			i = fieldPrefill
		case schema.AttrGenAILatencyTimeInModelDecode:
			i = fieldDecode
		case schema.AttrGenAILatencyTimeInModelInference:
			i = fieldInference
		case schema.AttrGenAILatencyTimeToFirstToken:
			i = fieldTTFT
		case schema.AttrGenAILatencyE2e:
			i = fieldE2E
		case schema.AttrGenAIUsagePromptTokens:
			i = fieldPromptTokens
		case schema.AttrGenAIUsageCompletionTokens:
			i = fieldCompletionTokens
		case schema.AttrGenAIUsageCachedTokens:
			i = fieldCachedTokens
		case schema.AttrGenAIRequestID:
			i, text = textRequestID, &f.requestID
		case schema.AttrGenAIResponseModel:
			i, text = textResponseModel, &f.responseModel
		case schema.AttrGenAIRequestModel:
			i, text = textRequestModel, &f.requestModel
		}
		if i < 0 || f.seen&(1<<i) != 0 {
			continue
		}
		f.seen |= 1 << i
		if text != nil {
			*text = v.AsString()
		} else if x, ok := attrvalue.Number(v); ok {
			f.numbers[i], f.numeric = x, f.numeric|1<<i
		}
	}
	return f
}

// violation names the first number of the span outside the bounds (negative, NaN, infinite, or more than
// one request can be), "" when all are within them. A number of another type (a string) reads as unknown
// later and is not a violation: it is missing evidence, not a false one.
func (b requestBounds) violation(f *spanFields, span ptrace.Span) string {
	for i, x := range f.numbers {
		if f.numeric&(1<<i) == 0 {
			continue
		}
		limit := b.maxSeconds
		if i >= fieldPromptTokens {
			limit = b.maxTokens
		}
		if !(x >= 0 && x <= limit) {
			return boundedAttributes[i]
		}
	}
	if start, end := span.StartTimestamp(), span.EndTimestamp(); end > start && float64(end-start)/1e9 > b.maxSeconds {
		return "span duration"
	}
	return ""
}

// readRequest turns an engine span into a breakdown. The phases always add up to e2e: other is what is left
// (tokenization, detokenization, the HTTP hop), never negative; when the engine's phases overrun e2e by
// rounding, e2e is what the phases say.
func readRequest(span ptrace.Span, res pcommon.Map, f *spanFields) *request {
	n := &f.numbers
	r := &request{
		span: span, resource: res,
		start: int64(span.StartTimestamp()), end: int64(span.EndTimestamp()),
		queue: number(n[fieldQueue]), prefill: number(n[fieldPrefill]), decode: number(n[fieldDecode]),
		ttft: number(n[fieldTTFT]), e2e: number(n[fieldE2E]),
		promptTokens: number(n[fieldPromptTokens]), genTokens: number(n[fieldCompletionTokens]),
		cachedTokens: number(n[fieldCachedTokens]),
		requestID:    f.requestID,
		model:        firstNonEmpty(f.responseModel, f.requestModel),
		engine:       attrvalue.String(res, schema.AttrLLMEngineName),
	}
	if math.IsNaN(r.e2e) && r.end > r.start {
		r.e2e = float64(r.end-r.start) / 1e9
	}
	// Only inference time given (some engines): the decode is what follows the first token.
	if inference := number(n[fieldInference]); math.IsNaN(r.decode) && !math.IsNaN(inference) && !math.IsNaN(r.prefill) {
		r.decode = math.Max(0, inference-r.prefill)
	}
	if r.start == 0 && r.end > 0 && !math.IsNaN(r.e2e) {
		r.start = r.end - int64(r.e2e*1e9)
	}
	known := 0.0
	for _, p := range []float64{r.queue, r.prefill, r.decode} {
		if !math.IsNaN(p) {
			known += p
		}
	}
	if !math.IsNaN(r.e2e) {
		if known > r.e2e {
			r.e2e = known
		}
		r.other = r.e2e - known
	} else {
		r.other = math.NaN()
	}
	if !math.IsNaN(r.decode) && r.genTokens > 1 {
		r.tpot = r.decode / (r.genTokens - 1)
	} else {
		r.tpot = math.NaN()
	}
	return r
}

func (r *request) uncachedPrompt() float64 {
	if math.IsNaN(r.promptTokens) {
		return math.NaN()
	}
	if math.IsNaN(r.cachedTokens) {
		return r.promptTokens
	}
	return math.Max(0, r.promptTokens-r.cachedTokens)
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
