package tensorrtllmreceiver

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
)

// iterationStats is one element of trtllm-serve's GET /metrics: the executor's IterationStats as JSON
// (camelCase keys). Pointers tell a missing key from a zero; unknown keys are ignored.
type iterationStats struct {
	Iter                            *int64                 `json:"iter"`
	IterLatencyMS                   *float64               `json:"iterLatencyMS"`
	NewActiveRequestsQueueLatencyMS *float64               `json:"newActiveRequestsQueueLatencyMS"`
	NumActiveRequests               *float64               `json:"numActiveRequests"`
	NumQueuedRequests               *float64               `json:"numQueuedRequests"`
	NumCompletedRequests            *float64               `json:"numCompletedRequests"`
	NumNewActiveRequests            *float64               `json:"numNewActiveRequests"`
	MaxNumActiveRequests            *float64               `json:"maxNumActiveRequests"`
	KVCache                         *kvCacheStats          `json:"kvCacheStats"`
	Inflight                        *inflightBatchingStats `json:"inflightBatchingStats"`
	Static                          *staticBatchingStats   `json:"staticBatchingStats"`
	SpecDecoding                    *specDecodingStats     `json:"specDecodingStats"`
}

type kvCacheStats struct {
	MaxNumBlocks   *float64 `json:"maxNumBlocks"`
	FreeNumBlocks  *float64 `json:"freeNumBlocks"`
	UsedNumBlocks  *float64 `json:"usedNumBlocks"`
	TokensPerBlock *float64 `json:"tokensPerBlock"`
	ReusedBlocks   *float64 `json:"reusedBlocks"` // cumulative since the engine started
	MissedBlocks   *float64 `json:"missedBlocks"` // cumulative since the engine started
	CacheHitRate   *float64 `json:"cacheHitRate"`
}

type inflightBatchingStats struct {
	NumScheduledRequests *float64 `json:"numScheduledRequests"`
	NumContextRequests   *float64 `json:"numContextRequests"`
	NumGenRequests       *float64 `json:"numGenRequests"`
	NumPausedRequests    *float64 `json:"numPausedRequests"`
	NumCtxTokens         *float64 `json:"numCtxTokens"`
}

type staticBatchingStats struct {
	NumScheduledRequests *float64 `json:"numScheduledRequests"`
	NumContextRequests   *float64 `json:"numContextRequests"`
	NumCtxTokens         *float64 `json:"numCtxTokens"`
	NumGenTokens         *float64 `json:"numGenTokens"`
}

type specDecodingStats struct {
	NumDraftTokens    *float64 `json:"numDraftTokens"`    // this iteration's
	NumAcceptedTokens *float64 `json:"numAcceptedTokens"` // this iteration's
	AcceptanceLength  *float64 `json:"acceptanceLength"`
}

// The canonical metrics read from the iteration stats, in the order they are emitted.
var (
	// Gauges: the latest iteration that reports the key wins.
	iterationGauges = []string{
		schema.MetricLLMSchedulerRequestsRunning, schema.MetricLLMSchedulerRequestsWaiting,
		schema.MetricLLMSchedulerRequestsMaxRunning, schema.MetricLLMSchedulerRequestsPaused,
		schema.MetricLLMEngineIterationDuration,
		schema.MetricLLMSchedulerBatchRequests, schema.MetricLLMSchedulerBatchContextRequests,
		schema.MetricLLMSchedulerBatchGenerationRequests, schema.MetricLLMSchedulerBatchContextTokens,
		schema.MetricLLMSchedulerBatchGenerationTokens,
		schema.MetricLLMKVCacheUtilization, schema.MetricLLMKVCacheBlocksUsed, schema.MetricLLMKVCacheBlocksFree,
		schema.MetricLLMKVCacheBlocksTotal, schema.MetricLLMKVCacheBlockSize,
		schema.MetricLLMPrefixCacheHitRatio, schema.MetricLLMSpecDecodeAcceptLength,
	}
	// Counters summed over every iteration read, since the first read (or the engine's restart).
	iterationSums = []string{
		schema.MetricLLMRequestsFinished, schema.MetricLLMRequestsStarted, schema.MetricLLMRequestsQueueDuration,
		schema.MetricLLMSpecDecodeDraftTokens, schema.MetricLLMSpecDecodeAcceptedTokens,
	}
	// Counters the engine itself keeps cumulative: the latest value is the total.
	engineCounters = []string{
		schema.MetricLLMEngineIterations, schema.MetricLLMKVCacheBlocksReused, schema.MetricLLMKVCacheBlocksMissed,
	}
)

// engineCounter is a counter the engine keeps, with the start of its current cumulative series.
type engineCounter struct {
	value float64
	start pcommon.Timestamp
}

// iterationReader turns the iteration stats drained by each poll into canonical metrics. One per receiver:
// it keeps the sums and the last gauges between polls, because each poll only sees the iterations since
// the previous one.
type iterationReader struct {
	seen     bool  // an iteration was ever read
	lastIter int64 // the last iteration counter read, when haveIter
	haveIter bool

	start  pcommon.Timestamp // start of the summed counters
	sums   map[string]float64
	gauges map[string]float64
	engine map[string]*engineCounter
}

func newIterationReader() func(body []byte, out *enginescrape.StateOutput) error {
	r := &iterationReader{sums: map[string]float64{}, gauges: map[string]float64{}, engine: map[string]*engineCounter{}}
	return r.read
}

// read takes one response of GET /metrics. Whatever happens, the totals held so far are emitted again, so
// that one bad response loses only its own iterations.
func (r *iterationReader) read(body []byte, out *enginescrape.StateOutput) error {
	if r.start == 0 {
		r.start = out.Now()
	}
	defer r.emit(out)
	var iterations []json.RawMessage
	if err := json.Unmarshal(body, &iterations); err != nil {
		return fmt.Errorf("iteration stats: expected a JSON array of iterations: %w", err)
	}
	if len(iterations) == 0 && !r.seen {
		out.Warn("empty", "trtllm-serve reports no iteration stats yet; it only does with enable_iter_perf_stats: true in its LLM-API options")
	}
	var firstErr error
	var missing int64
	for i, raw := range iterations {
		var it iterationStats
		if err := json.Unmarshal(raw, &it); err != nil {
			// encoding/json fills every field it can and names the first one of the wrong type; an element
			// that is not an object at all has nothing to keep.
			if firstErr == nil {
				firstErr = fmt.Errorf("iteration stats, element %d: %w", i, err)
			}
			var typeErr *json.UnmarshalTypeError
			if !errors.As(err, &typeErr) || typeErr.Field == "" {
				continue
			}
		}
		switch r.order(it, out) {
		case duplicate:
			continue
		case gap:
			missing += *it.Iter - r.lastIter - 1
		}
		if it.Iter != nil {
			r.lastIter, r.haveIter = *it.Iter, true
		}
		r.add(it, out.Now())
	}
	if missing > 0 {
		out.Warn("gap", "Iteration stats went missing between two reads of trtllm-serve's /metrics: the counters summed from them undercount. "+
			"Another client may be reading /metrics (it drains on read; this receiver must be its only consumer), or more iterations ran "+
			"in one collection_interval than iter_stats_max_iterations keeps", zap.Int64("missing_iterations", missing))
	}
	return firstErr
}

type sequence int

const (
	next sequence = iota
	gap
	duplicate
)

// order places an iteration after the previous ones by its iteration counter: the next one, after a gap,
// already read, or (when the counter went back) the first after an engine restart, which starts new
// cumulative series.
func (r *iterationReader) order(it iterationStats, out *enginescrape.StateOutput) sequence {
	if it.Iter == nil || !r.haveIter {
		return next
	}
	switch {
	case *it.Iter == r.lastIter:
		return duplicate
	case *it.Iter < r.lastIter:
		out.Info("trtllm-serve's iteration counter went back (engine restart?); started new cumulative series",
			zap.Int64("previous_iteration", r.lastIter), zap.Int64("iteration", *it.Iter))
		r.start = out.Now()
		clear(r.sums)
		for _, c := range r.engine {
			c.start, c.value = out.Now(), 0
		}
		return next
	case *it.Iter > r.lastIter+1:
		return gap
	}
	return next
}

func (r *iterationReader) add(it iterationStats, now pcommon.Timestamp) {
	r.seen = true
	gauge := func(name string, v *float64, scale float64) {
		if v != nil {
			r.gauges[name] = *v * scale
		}
	}
	sum := func(name string, v *float64) {
		if v != nil {
			r.sums[name] += *v
		}
	}
	gauge(schema.MetricLLMSchedulerRequestsRunning, it.NumActiveRequests, 1)
	gauge(schema.MetricLLMSchedulerRequestsWaiting, it.NumQueuedRequests, 1)
	gauge(schema.MetricLLMSchedulerRequestsMaxRunning, it.MaxNumActiveRequests, 1)
	gauge(schema.MetricLLMEngineIterationDuration, it.IterLatencyMS, 1e-3)
	sum(schema.MetricLLMRequestsFinished, it.NumCompletedRequests)
	sum(schema.MetricLLMRequestsStarted, it.NumNewActiveRequests)
	if it.NewActiveRequestsQueueLatencyMS != nil && it.NumNewActiveRequests != nil {
		// The key is the mean queue time of the requests that became active in this iteration.
		r.sums[schema.MetricLLMRequestsQueueDuration] += *it.NewActiveRequestsQueueLatencyMS * 1e-3 * *it.NumNewActiveRequests
	}
	if it.Iter != nil {
		r.engineValue(schema.MetricLLMEngineIterations, float64(*it.Iter), now)
	}
	if kv := it.KVCache; kv != nil {
		gauge(schema.MetricLLMKVCacheBlocksUsed, kv.UsedNumBlocks, 1)
		gauge(schema.MetricLLMKVCacheBlocksFree, kv.FreeNumBlocks, 1)
		gauge(schema.MetricLLMKVCacheBlocksTotal, kv.MaxNumBlocks, 1)
		gauge(schema.MetricLLMKVCacheBlockSize, kv.TokensPerBlock, 1)
		gauge(schema.MetricLLMPrefixCacheHitRatio, kv.CacheHitRate, 1)
		if kv.UsedNumBlocks != nil && kv.MaxNumBlocks != nil && *kv.MaxNumBlocks > 0 {
			r.gauges[schema.MetricLLMKVCacheUtilization] = *kv.UsedNumBlocks / *kv.MaxNumBlocks
		}
		if kv.ReusedBlocks != nil {
			r.engineValue(schema.MetricLLMKVCacheBlocksReused, *kv.ReusedBlocks, now)
		}
		if kv.MissedBlocks != nil {
			r.engineValue(schema.MetricLLMKVCacheBlocksMissed, *kv.MissedBlocks, now)
		}
	}
	// In-flight batching (the PyTorch backend and most TensorRT engines) or static batching: one of the two.
	if b := it.Inflight; b != nil {
		gauge(schema.MetricLLMSchedulerBatchRequests, b.NumScheduledRequests, 1)
		gauge(schema.MetricLLMSchedulerBatchContextRequests, b.NumContextRequests, 1)
		gauge(schema.MetricLLMSchedulerBatchGenerationRequests, b.NumGenRequests, 1)
		gauge(schema.MetricLLMSchedulerRequestsPaused, b.NumPausedRequests, 1)
		gauge(schema.MetricLLMSchedulerBatchContextTokens, b.NumCtxTokens, 1)
	}
	if b := it.Static; b != nil {
		gauge(schema.MetricLLMSchedulerBatchRequests, b.NumScheduledRequests, 1)
		gauge(schema.MetricLLMSchedulerBatchContextRequests, b.NumContextRequests, 1)
		gauge(schema.MetricLLMSchedulerBatchContextTokens, b.NumCtxTokens, 1)
		gauge(schema.MetricLLMSchedulerBatchGenerationTokens, b.NumGenTokens, 1)
	}
	if sd := it.SpecDecoding; sd != nil {
		sum(schema.MetricLLMSpecDecodeDraftTokens, sd.NumDraftTokens)
		sum(schema.MetricLLMSpecDecodeAcceptedTokens, sd.NumAcceptedTokens)
		gauge(schema.MetricLLMSpecDecodeAcceptLength, sd.AcceptanceLength, 1)
	}
}

// engineValue records a counter the engine keeps cumulative; a value below the previous one means the
// engine restarted, and a new cumulative series starts.
func (r *iterationReader) engineValue(name string, v float64, now pcommon.Timestamp) {
	c := r.engine[name]
	if c == nil {
		c = &engineCounter{start: r.start}
		r.engine[name] = c
	}
	if v < c.value {
		c.start = now
	}
	c.value = v
}

func (r *iterationReader) emit(out *enginescrape.StateOutput) {
	for _, name := range iterationGauges {
		if v, ok := r.gauges[name]; ok {
			out.Gauge(name, v)
		}
	}
	for _, name := range iterationSums {
		if v, ok := r.sums[name]; ok {
			out.Counter(name, v, r.start)
		}
	}
	for _, name := range engineCounters {
		if c, ok := r.engine[name]; ok {
			out.Counter(name, c.value, c.start)
		}
	}
}
