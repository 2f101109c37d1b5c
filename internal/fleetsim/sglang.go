package fleetsim

import (
	"math"
	"net/http"
)

// SGLang (--enable-metrics): scheduler families labelled model_name, engine_type, tp_rank, pp_rank and
// refreshed only when the scheduler logs (every prefill batch, every 40 decode steps); tokenizer families
// labelled model_name. Prometheus multiprocess mode, so no _created series.

const (
	sglangVersion           = "0.5.10"
	sglangDecodeLogInterval = 40
)

// sglangSnapshot is the scheduler state as of its last log.
type sglangSnapshot struct {
	running, queue, usedTokens, retracted   int
	tokenUsage, cacheHitRate, genThroughput float64
	cudaGraph                               float64
	decodeSteps                             int
	lastLogT, lastLogGen                    float64
}

func sglangBuckets(maxModelLen int) map[quantity][]float64 {
	tokens := buckets125(maxModelLen)
	return map[quantity][]float64{
		qTTFT:             {0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400},
		qE2E:              {0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400},
		qITL:              {0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8},
		qQueue:            {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500},
		qPromptTokens:     tokens,
		qGenerationTokens: tokens,
		qPreemptions:      {0, 1, 2, 3, 4, 5, 10, 20},
	}
}

// sglangLog refreshes the scheduler gauges the way SGLang's scheduler does: on every batch that prefills,
// and after every 40 decode-only steps.
func (rp *replica) sglangLog(t float64) {
	s := &rp.sgl
	prefill := rp.step.prefillTokens > 0
	if !prefill {
		s.decodeSteps++
		if s.decodeSteps < sglangDecodeLogInterval {
			return
		}
	}
	if prefill && rp.step.queries > 0 {
		s.cacheHitRate = rp.step.hits / rp.step.queries
	}
	if !prefill {
		if dt := t - s.lastLogT; dt > 0 {
			s.genThroughput = (rp.stats.generationTokens - s.lastLogGen) / dt
		}
		s.lastLogT, s.lastLogGen = t, rp.stats.generationTokens
		s.decodeSteps = 0
	}
	s.running = len(rp.running)
	s.queue = len(rp.waiting)
	s.usedTokens = rp.kv.usedBlocks() * rp.kv.blockSize
	s.tokenUsage = rp.kv.usage()
	s.retracted = rp.recoveringWaiting()
	s.cudaGraph = 0
	if !prefill {
		s.cudaGraph = 1 // decode-only batches replay CUDA graphs
	}
}

func (rp *replica) recoveringWaiting() int {
	n := 0
	for _, r := range rp.waiting {
		if r.recovering {
			n++
		}
	}
	return n
}

func (rp *replica) sglangMetrics(_ float64) []byte {
	f := rp.f
	e := &expo{style: stylePython}
	model := f.cfg.Model.Name
	sched := []label{{"model_name", model}, {"engine_type", "unified"}, {"tp_rank", "0"}, {"pp_rank", "0"}}
	tok := []label{{"model_name", model}}
	none := math.NaN() // multiprocess mode writes no _created series
	s := &rp.sgl
	st := rp.stats
	e.gauge("sglang:num_running_reqs", "Running requests.", sched, float64(s.running))
	e.gauge("sglang:num_queue_reqs", "Requests in the waiting queue.", sched, float64(s.queue))
	e.gauge("sglang:num_used_tokens", "KV tokens in use.", sched, float64(s.usedTokens))
	e.gauge("sglang:token_usage", "KV pool usage.", sched, s.tokenUsage)
	e.gauge("sglang:cache_hit_rate", "Prefix-cache hit rate of recent prefill batches.", sched, s.cacheHitRate)
	e.gauge("sglang:max_total_num_tokens", "KV pool capacity in tokens.", sched, float64(rp.kv.numBlocks()*rp.kv.blockSize))
	e.gauge("sglang:gen_throughput", "Generation throughput, tokens per second.", sched, s.genThroughput)
	e.gauge("sglang:utilization", "Share of the batch's request slots in use.", sched, float64(s.running)/float64(rp.maxSeqs))
	e.gauge("sglang:is_cuda_graph", "Whether the last batch ran as a CUDA graph.", sched, s.cudaGraph)
	e.gauge("sglang:num_retracted_reqs", "Currently retracted requests.", sched, float64(s.retracted))
	e.counter("sglang:num_retracted_requests_total", "Retracted requests.", sched, st.preemptions, none)
	e.counter("sglang:prompt_tokens_total", "Prefill tokens processed.", tok, st.promptTokens, none)
	e.counter("sglang:generation_tokens_total", "Generation tokens processed.", tok, st.generationTokens, none)
	e.counter("sglang:cached_tokens_total", "Prompt tokens served from the prefix cache.", tok, st.cachedTokens, none)
	e.counter("sglang:num_requests_total", "Finished requests.", tok, st.requests, none)
	e.counter("sglang:num_aborted_requests_total", "Aborted requests.", tok, 0, none)
	e.histogram("sglang:time_to_first_token_seconds", "Time to first token, seconds.", tok, st.hist[qTTFT], none)
	e.histogram("sglang:inter_token_latency_seconds", "Inter-token latency, seconds.", tok, st.hist[qITL], none)
	e.histogram("sglang:e2e_request_latency_seconds", "End-to-end request latency, seconds.", tok, st.hist[qE2E], none)
	e.histogram("sglang:queue_time_seconds", "Time in the waiting queue, seconds.", sched, st.hist[qQueue], none)
	e.histogram("sglang:prompt_tokens_histogram", "Prompt tokens per request.", tok, st.hist[qPromptTokens], none)
	e.histogram("sglang:generation_tokens_histogram", "Generation tokens per request.", tok, st.hist[qGenerationTokens], none)
	e.histogram("sglang:num_retractions", "Retractions per request.", tok, st.hist[qPreemptions], none)
	e.header("sglang:http_requests_active", "gauge", "Active HTTP requests.")
	e.sample("sglang:http_requests_active", []label{{"endpoint", "/v1/completions"}, {"method", "POST"}}, float64(rp.outstanding()))
	return e.b.Bytes()
}

func (rp *replica) sglangLoad(now float64) map[string]any {
	s := &rp.sgl
	capacity := rp.kv.numBlocks() * rp.kv.blockSize
	return map[string]any{
		"dp_rank": 0, "timestamp": float64(rp.f.epoch.UnixNano())/1e9 + now,
		"num_running_reqs": len(rp.running), "num_waiting_reqs": len(rp.waiting),
		"num_used_tokens": rp.kv.usedBlocks() * rp.kv.blockSize, "num_total_tokens": rp.kv.usedBlocks() * rp.kv.blockSize,
		"max_total_num_tokens": capacity, "token_usage": rp.kv.usage(), "gen_throughput": s.genThroughput,
		"cache_hit_rate": s.cacheHitRate, "utilization": float64(len(rp.running)) / float64(rp.maxSeqs),
		"max_running_requests": rp.maxSeqs,
		"queues":               map[string]int{"waiting": len(rp.waiting), "grammar": 0, "paused": 0, "retracted": rp.recoveringWaiting()},
	}
}

func (rp *replica) sglangRoutes(mux *http.ServeMux) {
	f := rp.f
	mux.HandleFunc("GET /metrics", rp.textHandler(rp.sglangMetrics))
	mux.HandleFunc("GET /health", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /v1/loads", rp.jsonHandler(func(now float64) any { return []map[string]any{rp.sglangLoad(now)} }))
	mux.HandleFunc("GET /get_load", rp.jsonHandler(func(now float64) any {
		return []map[string]any{{
			"dp_rank": 0, "num_reqs": rp.outstanding(), "num_waiting_reqs": len(rp.waiting),
			"num_tokens": rp.kv.usedBlocks() * rp.kv.blockSize, "num_pending_tokens": rp.pendingTokens(),
			"ts_tic": float64(f.epoch.UnixNano())/1e9 + now,
		}}
	}))
	info := func(float64) any {
		capacity := rp.kv.numBlocks() * rp.kv.blockSize
		return map[string]any{
			"model_path": f.cfg.Model.Name, "tokenizer_path": f.cfg.Model.Name, "tp_size": rp.tp, "dp_size": 1, "pp_size": 1,
			"max_running_requests": rp.maxSeqs, "chunked_prefill_size": rp.budget,
			"mem_fraction_static": f.cfg.Engine.GPUMemoryUtilization, "enable_metrics": true,
			"max_total_num_tokens": capacity, "max_req_input_len": f.cfg.Model.MaxModelLen - 5,
			"internal_states": []map[string]any{{"last_gen_throughput": rp.sgl.genThroughput, "memory_usage": map[string]any{
				"weight": f.cfg.Model.WeightBytes() / float64(rp.tp) / 1e9, "token_capacity": capacity,
			}}},
			"version": sglangVersion,
		}
	}
	mux.HandleFunc("GET /server_info", rp.jsonHandler(info))
	mux.HandleFunc("GET /get_server_info", rp.jsonHandler(info))
	mux.HandleFunc("GET /get_model_info", rp.jsonHandler(func(float64) any {
		return map[string]any{"model_path": f.cfg.Model.Name, "tokenizer_path": f.cfg.Model.Name, "is_generation": true}
	}))
}

// pendingTokens is the prompt work still queued.
func (rp *replica) pendingTokens() int {
	n := 0
	for _, r := range rp.waiting {
		n += r.known()
	}
	return n
}
