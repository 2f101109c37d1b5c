package fleetsim

import (
	"math"
	"net/http"
	"time"
)

// trtllm-serve: Prometheus text at /prometheus/metrics (trtllm_* families labelled engine_type and
// model_name, vLLM's bucket sets), JSON iteration statistics at /metrics, per-request timing at
// /perf_metrics. Both JSON endpoints hand out what accumulated since the last read and forget it.

const (
	trtllmVersion        = "1.2.0"
	trtllmMaxIterations  = 1000 // iter_stats_max_iterations
	trtllmMaxPerfRecords = 1000 // perf_metrics_max_requests
)

func trtllmBuckets() map[quantity][]float64 {
	return map[quantity][]float64{
		qTTFT: bucketsTTFT, qTPOT: bucketsITL,
		qE2E: bucketsReq, qQueue: bucketsReq, qPrefill: bucketsReq, qDecode: bucketsReq, qInference: bucketsReq,
	}
}

// iterationStat is one element of trtllm-serve's /metrics array (IterationStats, camelCase).
type iterationStat struct {
	Timestamp                       string          `json:"timestamp"`
	Iter                            int             `json:"iter"`
	IterLatencyMS                   float64         `json:"iterLatencyMS"`
	NewActiveRequestsQueueLatencyMS float64         `json:"newActiveRequestsQueueLatencyMS"`
	NumActiveRequests               int             `json:"numActiveRequests"`
	NumQueuedRequests               int             `json:"numQueuedRequests"`
	NumCompletedRequests            int             `json:"numCompletedRequests"`
	NumNewActiveRequests            int             `json:"numNewActiveRequests"`
	MaxNumActiveRequests            int             `json:"maxNumActiveRequests"`
	GPUMemUsage                     int64           `json:"gpuMemUsage"`
	CPUMemUsage                     int64           `json:"cpuMemUsage"`
	PinnedMemUsage                  int64           `json:"pinnedMemUsage"`
	MaxBatchSizeStatic              int             `json:"maxBatchSizeStatic"`
	MaxBatchSizeRuntime             int             `json:"maxBatchSizeRuntime"`
	MaxNumTokensStatic              int             `json:"maxNumTokensStatic"`
	MaxNumTokensRuntime             int             `json:"maxNumTokensRuntime"`
	KVCacheStats                    kvCacheStats    `json:"kvCacheStats"`
	InflightBatchingStats           inflightBatches `json:"inflightBatchingStats"`
}

type kvCacheStats struct {
	MaxNumBlocks     int     `json:"maxNumBlocks"`
	FreeNumBlocks    int     `json:"freeNumBlocks"`
	UsedNumBlocks    int     `json:"usedNumBlocks"`
	TokensPerBlock   int     `json:"tokensPerBlock"`
	AllocTotalBlocks int     `json:"allocTotalBlocks"`
	AllocNewBlocks   int     `json:"allocNewBlocks"`
	ReusedBlocks     int     `json:"reusedBlocks"`
	MissedBlocks     int     `json:"missedBlocks"`
	CacheHitRate     float64 `json:"cacheHitRate"`
}

type inflightBatches struct {
	NumScheduledRequests       int     `json:"numScheduledRequests"`
	NumContextRequests         int     `json:"numContextRequests"`
	NumGenRequests             int     `json:"numGenRequests"`
	NumPausedRequests          int     `json:"numPausedRequests"`
	NumCtxTokens               int     `json:"numCtxTokens"`
	MicroBatchID               int     `json:"microBatchId"`
	AvgNumDecodedTokensPerIter float64 `json:"avgNumDecodedTokensPerIter"`
}

// perfRecord is one element of /perf_metrics (RequestPerfMetrics; times in seconds on the server's clock).
type perfRecord struct {
	RequestID   string      `json:"request_id"`
	PerfMetrics perfMetrics `json:"perf_metrics"`
}

type perfMetrics struct {
	TimingMetrics  timingMetrics  `json:"timing_metrics"`
	KVCacheMetrics kvCacheMetrics `json:"kv_cache_metrics"`
}

type timingMetrics struct {
	ArrivalTime        float64 `json:"arrival_time"`
	FirstScheduledTime float64 `json:"first_scheduled_time"`
	FirstTokenTime     float64 `json:"first_token_time"`
	LastTokenTime      float64 `json:"last_token_time"`
}

type kvCacheMetrics struct {
	NumTotalAllocatedBlocks int `json:"num_total_allocated_blocks"`
	NumNewAllocatedBlocks   int `json:"num_new_allocated_blocks"`
	NumReusedBlocks         int `json:"num_reused_blocks"`
	NumMissedBlocks         int `json:"num_missed_blocks"`
}

// trtllmState is what trtllm-serve keeps for its JSON endpoints and cumulative block counters.
type trtllmState struct {
	iterations         []iterationStat
	perf               []perfRecord
	reusedBlocks       float64
	missedBlocks       float64
	completed          float64
	lastHitRate        float64
	lastIterLatency    float64
	lastContextTokens  int
	lastContextReqs    int
	lastGenerationReqs int
}

// recordIteration keeps the per-step statistics each engine publishes.
func (rp *replica) recordIteration(t float64, completed int) {
	rp.iter++
	switch rp.engine {
	case EngineSGLang:
		rp.sglangLog(t)
	case EngineTRTLLM:
		rp.trtllmIteration(t, completed)
	}
}

func (rp *replica) trtllmIteration(t float64, completed int) {
	st := rp.step
	s := &rp.trt
	bs := rp.kv.blockSize
	reused := int(st.hits) / bs
	missed := st.newBlocks
	s.reusedBlocks += float64(reused)
	s.missedBlocks += float64(missed)
	s.completed += float64(completed)
	if reused+missed > 0 {
		s.lastHitRate = float64(reused) / float64(reused+missed)
	}
	s.lastIterLatency = st.actual
	ctxReqs := 0
	for _, sl := range rp.batch {
		if !sl.decode {
			ctxReqs++
		}
	}
	s.lastContextTokens, s.lastContextReqs, s.lastGenerationReqs = st.prefillTokens, ctxReqs, st.decodeSeqs
	queueMS := 0.0
	if st.newRequests > 0 {
		queueMS = st.newQueueSum / float64(st.newRequests) * 1000
	}
	used := rp.kv.usedBlocks()
	it := iterationStat{
		Timestamp:                       rp.f.wall(t).UTC().Format("01-02-2006 15:04:05"),
		Iter:                            rp.iter,
		IterLatencyMS:                   round6(st.actual * 1000),
		NewActiveRequestsQueueLatencyMS: round6(queueMS),
		NumActiveRequests:               len(rp.running),
		NumQueuedRequests:               len(rp.waiting),
		NumCompletedRequests:            completed,
		NumNewActiveRequests:            st.newRequests,
		MaxNumActiveRequests:            rp.maxSeqs,
		GPUMemUsage:                     rp.gpuMemUsedBytes(),
		MaxBatchSizeStatic:              rp.maxSeqs,
		MaxBatchSizeRuntime:             rp.maxSeqs,
		MaxNumTokensStatic:              rp.budget,
		MaxNumTokensRuntime:             rp.budget,
		KVCacheStats: kvCacheStats{
			MaxNumBlocks: rp.kv.numBlocks(), FreeNumBlocks: rp.kv.numBlocks() - used, UsedNumBlocks: used,
			TokensPerBlock: bs, AllocTotalBlocks: reused + missed, AllocNewBlocks: missed,
			ReusedBlocks: reused, MissedBlocks: missed, CacheHitRate: round6(s.lastHitRate),
		},
		InflightBatchingStats: inflightBatches{
			NumScheduledRequests: len(rp.batch), NumContextRequests: ctxReqs, NumGenRequests: st.decodeSeqs,
			NumPausedRequests: rp.recoveringWaiting(), NumCtxTokens: st.prefillTokens, AvgNumDecodedTokensPerIter: 1,
		},
	}
	if len(s.iterations) >= trtllmMaxIterations {
		s.iterations = append(s.iterations[:0], s.iterations[1:]...)
	}
	s.iterations = append(s.iterations, it)
}

// trtllmPerf keeps a finished request's timing for /perf_metrics.
func (rp *replica) trtllmPerf(r *request) {
	s := &rp.trt
	epoch := float64(rp.f.epoch.UnixNano()) / 1e9
	bs := rp.kv.blockSize
	total := ceilDiv(r.known(), bs)
	reused := r.cached / bs
	rec := perfRecord{RequestID: r.id, PerfMetrics: perfMetrics{
		TimingMetrics: timingMetrics{
			ArrivalTime: epoch + r.arrival, FirstScheduledTime: epoch + r.scheduled,
			FirstTokenTime: epoch + r.firstToken, LastTokenTime: epoch + r.lastToken,
		},
		KVCacheMetrics: kvCacheMetrics{
			NumTotalAllocatedBlocks: total, NumNewAllocatedBlocks: total - reused, NumReusedBlocks: reused, NumMissedBlocks: total - reused,
		},
	}}
	if len(s.perf) >= trtllmMaxPerfRecords {
		s.perf = append(s.perf[:0], s.perf[1:]...)
	}
	s.perf = append(s.perf, rec)
}

func (rp *replica) trtllmMetrics(_ float64) []byte {
	f := rp.f
	e := &expo{style: stylePython, sort: true}
	base := []label{{"engine_type", "trtllm"}, {"model_name", f.cfg.Model.Name}}
	none := math.NaN()
	st := rp.stats
	s := &rp.trt
	e.header("trtllm_request_success_total", "counter", "Finished requests by finish reason.")
	for _, r := range []string{"stop", "length"} {
		e.sample("trtllm_request_success_total", with(base, label{"finished_reason", r}), st.finished[r])
	}
	// No request fails in the simulation: like prometheus_client with a labelled counter no one has
	// incremented, the family is declared without series.
	e.header("trtllm_request_error_total", "counter", "Failed requests by HTTP status.")
	h := func(name, help string, q quantity) { e.histogram(name, help, base, st.hist[q], none) }
	h("trtllm_e2e_request_latency_seconds", "End-to-end request latency, seconds.", qE2E)
	h("trtllm_time_to_first_token_seconds", "Time to first token, seconds.", qTTFT)
	h("trtllm_time_per_output_token_seconds", "Mean time per output token per request, seconds.", qTPOT)
	h("trtllm_request_queue_time_seconds", "Time from arrival to first scheduled, seconds.", qQueue)
	h("trtllm_request_prefill_time_seconds", "Time from first scheduled to first token, seconds.", qPrefill)
	h("trtllm_request_decode_time_seconds", "Time from first to last token, seconds.", qDecode)
	h("trtllm_request_inference_time_seconds", "Time from first scheduled to last token, seconds.", qInference)
	e.counter("trtllm_prompt_tokens_total", "Prefill tokens processed.", base, st.promptTokens, none)
	e.counter("trtllm_generation_tokens_total", "Generation tokens processed.", base, st.generationTokens, none)
	e.counter("trtllm_prompt_cached_tokens_total", "Prompt tokens reused from the KV cache.", base, st.cachedTokens, none)
	e.counter("trtllm_num_requests_completed_total", "Completed requests.", base, s.completed, none)
	e.gauge("trtllm_num_requests_running", "Active requests.", base, float64(len(rp.running)))
	e.gauge("trtllm_num_requests_waiting", "Queued requests.", base, float64(len(rp.waiting)))
	e.gauge("trtllm_max_num_active_requests", "Most requests active at once.", base, float64(rp.maxSeqs))
	e.gauge("trtllm_num_paused_requests", "Requests paused for want of KV blocks.", base, float64(rp.recoveringWaiting()))
	e.gauge("trtllm_num_scheduled_requests", "Requests scheduled in the last iteration.", base, float64(s.lastContextReqs+s.lastGenerationReqs))
	e.gauge("trtllm_num_context_requests", "Context-phase requests in the last iteration.", base, float64(s.lastContextReqs))
	e.gauge("trtllm_num_generation_requests", "Generation-phase requests in the last iteration.", base, float64(s.lastGenerationReqs))
	e.gauge("trtllm_total_context_tokens", "Context tokens in the last iteration.", base, float64(s.lastContextTokens))
	e.gauge("trtllm_iteration_latency_seconds", "Latency of the last iteration, seconds.", base, s.lastIterLatency)
	e.gauge("trtllm_kv_cache_utilization", "KV-cache utilization.", base, rp.kv.usage())
	e.gauge("trtllm_kv_cache_hit_rate", "KV-cache block reuse rate of the last iteration.", base, s.lastHitRate)
	e.gauge("trtllm_kv_cache_max_blocks", "KV-cache blocks.", base, float64(rp.kv.numBlocks()))
	e.gauge("trtllm_kv_cache_free_blocks", "Free KV-cache blocks.", base, float64(rp.kv.free))
	e.gauge("trtllm_kv_cache_used_blocks", "Used KV-cache blocks.", base, float64(rp.kv.usedBlocks()))
	e.gauge("trtllm_kv_cache_tokens_per_block", "Tokens per KV-cache block.", base, float64(rp.kv.blockSize))
	e.counter("trtllm_kv_cache_reused_blocks_total", "KV-cache blocks reused.", base, s.reusedBlocks, none)
	e.counter("trtllm_kv_cache_missed_blocks_total", "KV-cache blocks allocated without reuse.", base, s.missedBlocks, none)
	return e.b.Bytes()
}

func (rp *replica) trtllmRoutes(mux *http.ServeMux) {
	f := rp.f
	mux.HandleFunc("GET /prometheus/metrics", rp.textHandler(rp.trtllmMetrics))
	// Drained on read: whoever polls gets the iterations since the previous poll.
	mux.HandleFunc("GET /metrics", rp.jsonHandler(func(float64) any {
		out := rp.trt.iterations
		rp.trt.iterations = nil
		if out == nil {
			out = []iterationStat{}
		}
		return out
	}))
	mux.HandleFunc("GET /perf_metrics", rp.jsonHandler(func(float64) any {
		out := rp.trt.perf
		rp.trt.perf = nil
		if out == nil {
			out = []perfRecord{}
		}
		return out
	}))
	mux.HandleFunc("GET /health", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /version", rp.jsonHandler(func(float64) any { return map[string]string{"version": trtllmVersion} }))
	mux.HandleFunc("GET /v1/models", rp.jsonHandler(func(float64) any {
		return map[string]any{"object": "list", "data": []map[string]any{{"id": f.cfg.Model.Name, "object": "model", "owned_by": "tensorrt_llm"}}}
	}))
}

// gpuMemUsedBytes is what the engine process holds on one GPU: its slice of the weights, the activation
// reserve and the whole KV pool, all allocated at start.
func (rp *replica) gpuMemUsedBytes() int64 {
	c := rp.f.cfg
	kv := float64(rp.kv.numBlocks()*rp.kv.blockSize) * c.Model.KVBytesPerToken() / float64(rp.tp)
	return int64(c.Model.WeightBytes()/float64(rp.tp) + c.Engine.ActivationMiB*(1<<20) + kv)
}

// wall maps virtual time to the wall clock.
func (f *Fleet) wall(t float64) time.Time {
	return f.epoch.Add(time.Duration(t * float64(time.Second)))
}
