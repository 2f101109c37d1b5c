package tensorrtllmreceiver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
)

// The request span the root-cause connector reads, as vLLM emits it (name, kind, attribute keys and units;
// the keys are the schema's span attributes). gen_ai.usage.prompt_tokens and gen_ai.usage.completion_tokens
// belong to the contract too, but trtllm-serve's /perf_metrics records carry no token counts, so this
// receiver never sets them.
const (
	requestSpanName = "llm_request"

	attrRequestID       = schema.AttrGenAIRequestID
	attrTimeInQueue     = schema.AttrGenAILatencyTimeInQueue
	attrTimeToFirst     = schema.AttrGenAILatencyTimeToFirstToken
	attrE2E             = schema.AttrGenAILatencyE2e
	attrPrefill         = schema.AttrGenAILatencyTimeInModelPrefill
	attrDecode          = schema.AttrGenAILatencyTimeInModelDecode
	attrInference       = schema.AttrGenAILatencyTimeInModelInference
	attrKVTransfer      = schema.AttrGenAILatencyKVCacheTransferTime
	perfMetricsPath     = "/perf_metrics"
	steadyClockPath     = "/steady_clock_offset"
	clockResyncInterval = 5 * time.Minute
	// unixSecondsFloor tells wall-clock seconds from steady-clock seconds: a steady clock (seconds since
	// boot) would need 31 years of uptime to reach it.
	unixSecondsFloor = 1e9
	// maxUnixSeconds is the last second a span timestamp (nanoseconds in 64 bits) can hold, in 2262.
	maxUnixSeconds = math.MaxInt64 / 1e9
)

// perfRecord is one element of GET /perf_metrics, as trtllm-serve's openai_server.py writes it. Pointers
// tell a missing key from a zero; unknown keys are ignored.
type perfRecord struct {
	RequestID   json.RawMessage `json:"request_id"` // an integer in the releases read; a string is kept as is
	PerfMetrics *struct {
		Timing *struct {
			ArrivalTime          *float64 `json:"arrival_time"`
			FirstScheduledTime   *float64 `json:"first_scheduled_time"`
			FirstTokenTime       *float64 `json:"first_token_time"`
			LastTokenTime        *float64 `json:"last_token_time"`
			KVCacheTransferStart *float64 `json:"kv_cache_transfer_start"`
			KVCacheTransferEnd   *float64 `json:"kv_cache_transfer_end"`
		} `json:"timing_metrics"`
	} `json:"perf_metrics"`
}

// engineClock maps the engine's timestamps onto wall time. trtllm-serve writes them in seconds of its
// steady clock (C++ std::chrono::steady_clock, seconds since boot on Linux), not Unix time.
type engineClock struct {
	offset   float64 // wall seconds minus engine steady-clock seconds
	syncedAt time.Time
	ok       bool
}

// perfReader turns the records drained by each poll of /perf_metrics into request spans. One per receiver:
// it keeps the clock offset between polls.
type perfReader struct {
	clock    engineClock
	clockErr error // why the last clock reading failed, for the warning about the records it leaves unplaced
	seen     bool
	idGen    func() (pcommon.TraceID, pcommon.SpanID)
	wallNow  func() time.Time
}

func newPerfReader() enginescrape.SpanPoller {
	r := &perfReader{idGen: randomIDs, wallNow: time.Now}
	return r.poll
}

func (r *perfReader) poll(ctx context.Context, p *enginescrape.SpanPoll) error {
	body, err := p.Get(ctx, perfMetricsPath, 64<<20)
	if err != nil {
		if code, ok := enginescrape.StatusCode(err); ok && code == http.StatusNotFound {
			return fmt.Errorf("%s: not served by this trtllm-serve (a release without request records?): %w", perfMetricsPath, err)
		}
		return fmt.Errorf("%s: %w", perfMetricsPath, err)
	}
	var records []json.RawMessage
	if err := json.Unmarshal(body, &records); err != nil {
		return fmt.Errorf("%s: expected a JSON array of request records: %w", perfMetricsPath, err)
	}
	if len(records) == 0 {
		if !r.seen {
			p.Warn("empty", "trtllm-serve has reported no request records yet: it keeps them only with return_perf_metrics: true and perf_metrics_max_requests > 0 in its LLM-API options (or no request has finished)")
		}
		return nil
	}
	r.seen = true
	decoded, err := decode(records)
	if r.needsClock(decoded) && (!r.clock.ok || r.wallNow().Sub(r.clock.syncedAt) > clockResyncInterval) {
		r.clockErr = r.syncClock(ctx, p)
	}
	r.convert(decoded, p)
	return err
}

// decode reads the records it can: encoding/json fills every field it can and names the first one of the
// wrong type; an element that is not an object has nothing to keep.
func decode(records []json.RawMessage) ([]perfRecord, error) {
	var firstErr error
	out := make([]perfRecord, 0, len(records))
	for i, raw := range records {
		var rec perfRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s, record %d: %w", perfMetricsPath, i, err)
			}
			var typeErr *json.UnmarshalTypeError
			if !errors.As(err, &typeErr) || typeErr.Field == "" {
				continue
			}
		}
		out = append(out, rec)
	}
	return out, firstErr
}

// needsClock reports whether a record has steady-clock times (the releases read all do).
func (r *perfReader) needsClock(records []perfRecord) bool {
	for _, rec := range records {
		if rec.PerfMetrics != nil && rec.PerfMetrics.Timing != nil {
			if a := rec.PerfMetrics.Timing.ArrivalTime; a != nil && *a < unixSecondsFloor {
				return true
			}
		}
	}
	return false
}

// syncClock estimates the offset from a GET of /steady_clock_offset, which answers with the engine's
// steady clock when the request arrived and when the answer left (0.2 s apart): the middle of that
// interval is taken to be the middle of the request's round trip on the wall clock.
func (r *perfReader) syncClock(ctx context.Context, p *enginescrape.SpanPoll) error {
	sent := r.wallNow()
	body, err := p.Get(ctx, steadyClockPath, 4<<10)
	answered := r.wallNow()
	if err != nil {
		return err
	}
	var ts struct {
		ReceiveTS  *float64 `json:"receive_ts"`
		TransmitTS *float64 `json:"transmit_ts"`
	}
	if err := json.Unmarshal(body, &ts); err != nil {
		return err
	}
	if ts.ReceiveTS == nil || ts.TransmitTS == nil {
		return errors.New(`answer lacks "receive_ts" or "transmit_ts"`)
	}
	wallMid := float64(sent.UnixNano())/1e9 + answered.Sub(sent).Seconds()/2
	r.clock = engineClock{offset: wallMid - (*ts.ReceiveTS+*ts.TransmitTS)/2, syncedAt: answered, ok: true}
	return nil
}

// shift is what to add to a record's times to put them on the wall clock, decided by its arrival time so
// that all its times move together; ok is false when they cannot be placed.
func (r *perfReader) shift(arrival float64) (float64, bool) {
	switch {
	case arrival >= unixSecondsFloor:
		return 0, true
	case r.clock.ok:
		return r.clock.offset, true
	}
	return 0, false
}

func seconds(s float64) pcommon.Timestamp { return pcommon.Timestamp(math.Round(s * 1e9)) }

// convert appends one span per record. A record that cannot become a span (no arrival or last-token time,
// times that cannot be placed) is skipped with a once-per-problem warning; the others count.
func (r *perfReader) convert(records []perfRecord, p *enginescrape.SpanPoll) {
	dropped := 0
	for _, rec := range records {
		switch err := r.appendSpan(rec, p); {
		case errors.Is(err, errNoClock):
			dropped++
		case err != nil:
			p.Warn("record", "A request record of trtllm-serve's /perf_metrics cannot become a span; skipped", zap.Error(err))
		}
	}
	if dropped > 0 {
		p.Warn("unplaced", "Request records dropped: their times are on trtllm-serve's steady clock, which cannot be placed in time until /steady_clock_offset answers",
			zap.Int("records", dropped), zap.NamedError("clock_error", r.clockErr))
	}
}

var errNoClock = errors.New("steady-clock times and no clock offset")

func (r *perfReader) appendSpan(rec perfRecord, p *enginescrape.SpanPoll) error {
	if rec.PerfMetrics == nil || rec.PerfMetrics.Timing == nil {
		return errors.New(`record lacks "perf_metrics.timing_metrics"`)
	}
	tm := rec.PerfMetrics.Timing
	// An unset time point serialises as 0 (the clock's epoch), which no real event has: treat it as missing.
	at := func(v *float64) (float64, bool) {
		return valueOf(v), v != nil && *v > 0 && !math.IsInf(*v, 0) && !math.IsNaN(*v)
	}
	arrival, okArrival := at(tm.ArrivalTime)
	last, okLast := at(tm.LastTokenTime)
	if !okArrival || !okLast {
		return errors.New(`record lacks "timing_metrics.arrival_time" or "timing_metrics.last_token_time": no span without its start and end`)
	}
	if last < arrival {
		return fmt.Errorf("last_token_time %v is before arrival_time %v", last, arrival)
	}
	offset, ok := r.shift(arrival)
	if !ok {
		return errNoClock
	}
	if arrival+offset < 0 || last+offset > maxUnixSeconds {
		return fmt.Errorf("times %v to %v are not on a clock this receiver knows", arrival, last)
	}
	start, end := seconds(arrival+offset), seconds(last+offset)

	span := p.AppendSpan()
	traceID, spanID := r.idGen()
	span.SetTraceID(traceID)
	span.SetSpanID(spanID)
	span.SetName(requestSpanName)
	span.SetKind(ptrace.SpanKindServer)
	span.SetStartTimestamp(start)
	span.SetEndTimestamp(end)
	attrs := span.Attributes()
	if id, ok := requestID(rec.RequestID); ok {
		attrs.PutStr(attrRequestID, id)
	}
	// Phases as TensorRT-LLM defines them for its own latency histograms: queue = first scheduled -
	// arrival, TTFT = first token - arrival, e2e = last token - arrival, prefill = first token - first
	// scheduled, decode = last token - first token, inference = last token - first scheduled.
	attrs.PutDouble(attrE2E, last-arrival)
	scheduled, okScheduled := at(tm.FirstScheduledTime)
	first, okFirst := at(tm.FirstTokenTime)
	phase := func(key string, from, to float64, ok bool) {
		if ok && to >= from {
			attrs.PutDouble(key, to-from)
		}
	}
	phase(attrTimeInQueue, arrival, scheduled, okScheduled)
	phase(attrTimeToFirst, arrival, first, okFirst)
	phase(attrPrefill, scheduled, first, okScheduled && okFirst)
	phase(attrDecode, first, last, okFirst)
	phase(attrInference, scheduled, last, okScheduled)
	transferStart, okStart := at(tm.KVCacheTransferStart)
	transferEnd, okEnd := at(tm.KVCacheTransferEnd)
	phase(attrKVTransfer, transferStart, transferEnd, okStart && okEnd)
	return nil
}

func valueOf(v *float64) float64 {
	if v == nil {
		return 0
	}
	return *v
}

// requestID renders the record's request_id: an integer as its decimal digits, a string as it is.
func requestID(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, s != ""
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
			return strconv.FormatInt(i, 10), true
		}
		return n.String(), true
	}
	return "", false
}

// randomIDs gives each span a fresh trace: the records carry no trace context.
func randomIDs() (pcommon.TraceID, pcommon.SpanID) {
	var t pcommon.TraceID
	var s pcommon.SpanID
	_, _ = rand.Read(t[:])
	_, _ = rand.Read(s[:])
	return t, s
}
