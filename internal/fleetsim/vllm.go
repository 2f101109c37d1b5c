package fleetsim

import (
	"net/http"
	"strconv"
)

// vLLM V1 (vllm/v1/metrics/loggers.py): every family labelled model_name and engine (the engine-core
// index), labels in alphabetical order, counters with prometheus_client's _created companions.

// vllmIterationBuckets are the bucket bounds of vllm:iteration_tokens_total as a V1 server on an H100 writes
// them (its CUDA-graph capture sizes up to the batch-token limit).
var vllmIterationBuckets = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}

// vllmKVResidencyBuckets are the bounds vLLM gives its three KV-cache residency histograms
// (vllm:kv_block_lifetime_seconds, vllm:kv_block_idle_before_evict_seconds, vllm:kv_block_reuse_gap_seconds;
// kv_cache_residency_buckets in vllm/v1/metrics/loggers.py): 1 ms to 30 min.
var vllmKVResidencyBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800}

func vllmBuckets(maxModelLen int) map[quantity][]float64 {
	tokens := buckets125(maxModelLen)
	return map[quantity][]float64{
		qTTFT: bucketsTTFT, qITL: bucketsITL, qTPOT: bucketsITL,
		qE2E: bucketsReq, qQueue: bucketsReq, qInference: bucketsReq, qPrefill: bucketsReq, qDecode: bucketsReq,
		qPromptTokens: tokens, qGenerationTokens: tokens, qMaxTokens: tokens, qPrefillComputed: tokens,
		qParamsN:         {1, 2, 5, 10, 20},
		qPreemptions:     {1, 2, 3, 4, 5, 10, 20},
		qIterationTokens: vllmIterationBuckets,
		qKVBlockLifetime: vllmKVResidencyBuckets, qKVBlockIdle: vllmKVResidencyBuckets, qKVBlockReuseGap: vllmKVResidencyBuckets,
	}
}

const vllmVersion = "0.11.2"

func (rp *replica) vllmMetrics(_ float64) []byte {
	f := rp.f
	e := &expo{style: stylePython, sort: true}
	base := []label{{"engine", "0"}, {"model_name", f.cfg.Model.Name}}
	created := float64(f.epoch.UnixNano()) / 1e9
	s := rp.stats
	e.counter("vllm:estimated_flops_per_gpu_total", "Estimated floating-point operations per GPU.", base, s.flopsPerGPU, created)
	e.counter("vllm:estimated_read_bytes_per_gpu_total", "Estimated bytes read from GPU memory per GPU.", base, s.readBytesPerGPU, created)
	e.counter("vllm:estimated_write_bytes_per_gpu_total", "Estimated bytes written to GPU memory per GPU.", base, s.writeBytesPerGPU, created)
	e.gauge("vllm:num_requests_running", "Requests in model execution batches.", base, float64(len(rp.running)))
	e.gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.", base, float64(len(rp.waiting)))
	e.header("vllm:num_requests_waiting_by_reason", "gauge", "Waiting requests by reason.")
	e.sample("vllm:num_requests_waiting_by_reason", with(base, label{"reason", "capacity"}), float64(len(rp.waiting)))
	e.sample("vllm:num_requests_waiting_by_reason", with(base, label{"reason", "deferred"}), 0)
	e.header("vllm:engine_sleep_state", "gauge", "Engine sleep state (1 for the current state).")
	e.sample("vllm:engine_sleep_state", with(base, label{"sleep_state", "awake"}), 1)
	e.sample("vllm:engine_sleep_state", with(base, label{"sleep_state", "weights_offloaded"}), 0)
	e.sample("vllm:engine_sleep_state", with(base, label{"sleep_state", "discard_all"}), 0)
	e.gauge("vllm:kv_cache_usage_perc", "KV-cache usage; 1 means full.", base, rp.kv.usage())
	e.counter("vllm:prefix_cache_queries_total", "Prefix-cache lookups, in tokens.", base, s.prefixQueries, created)
	e.counter("vllm:prefix_cache_hits_total", "Prefix-cache hits, in tokens.", base, s.prefixHits, created)
	// No KV connector and no multimodal inputs: these stay at zero, as on a plain text-only server.
	e.counter("vllm:external_prefix_cache_queries_total", "External prefix-cache lookups, in tokens.", base, 0, created)
	e.counter("vllm:external_prefix_cache_hits_total", "External prefix-cache hits, in tokens.", base, 0, created)
	e.counter("vllm:mm_cache_queries_total", "Multimodal cache lookups, in items.", base, 0, created)
	e.counter("vllm:mm_cache_hits_total", "Multimodal cache hits, in items.", base, 0, created)
	e.counter("vllm:num_preemptions_total", "Preemptions since start.", base, s.preemptions, created)
	e.counter("vllm:prompt_tokens_total", "Prefill tokens processed.", base, s.promptTokens, created)
	bySource := [][]label{
		with(base, label{"source", "local_compute"}), with(base, label{"source", "local_cache_hit"}), with(base, label{"source", "external_kv_transfer"}),
	}
	e.header("vllm:prompt_tokens_by_source_total", "counter", "Prompt tokens by where their KV came from.")
	e.sample("vllm:prompt_tokens_by_source_total", bySource[0], s.promptComputed)
	e.sample("vllm:prompt_tokens_by_source_total", bySource[1], s.cachedTokens)
	e.sample("vllm:prompt_tokens_by_source_total", bySource[2], 0)
	e.created("vllm:prompt_tokens_by_source", "Prompt tokens by where their KV came from.", bySource, created)
	e.counter("vllm:prompt_tokens_cached_total", "Cached prompt tokens.", base, s.cachedTokens, created)
	e.counter("vllm:generation_tokens_total", "Generation tokens processed.", base, s.generationTokens, created)
	reasons := []string{"stop", "length", "abort", "error", "repetition"}
	var series [][]label
	e.header("vllm:request_success_total", "counter", "Finished requests by finish reason.")
	for _, r := range reasons {
		l := with(base, label{"finished_reason", r})
		series = append(series, l)
		e.sample("vllm:request_success_total", l, s.finished[r])
	}
	e.created("vllm:request_success", "Finished requests by finish reason.", series, created)
	h := func(name, help string, q quantity) { e.histogram(name, help, base, s.hist[q], created) }
	h("vllm:request_prompt_tokens", "Prompt tokens per finished request.", qPromptTokens)
	h("vllm:request_generation_tokens", "Generated tokens per finished request.", qGenerationTokens)
	h("vllm:iteration_tokens_total", "Tokens per engine step.", qIterationTokens)
	h("vllm:request_max_num_generation_tokens", "Maximum generation tokens requested per request.", qMaxTokens)
	h("vllm:request_params_n", "The n parameter per request.", qParamsN)
	h("vllm:request_params_max_tokens", "The max_tokens parameter per request.", qMaxTokens)
	h("vllm:time_to_first_token_seconds", "Time to first token, seconds.", qTTFT)
	h("vllm:inter_token_latency_seconds", "Time between output tokens, seconds.", qITL)
	h("vllm:request_time_per_output_token_seconds", "Mean time per output token per request, seconds.", qTPOT)
	h("vllm:e2e_request_latency_seconds", "End-to-end request latency, seconds.", qE2E)
	h("vllm:request_queue_time_seconds", "Time waiting before first scheduled, seconds.", qQueue)
	h("vllm:request_inference_time_seconds", "Time from first scheduled to last token, seconds.", qInference)
	h("vllm:request_prefill_time_seconds", "Time from first scheduled to first token, seconds.", qPrefill)
	h("vllm:request_decode_time_seconds", "Time from first to last token, seconds.", qDecode)
	h("vllm:request_num_preemptions", "Preemptions per finished request.", qPreemptions)
	h("vllm:request_prefill_kv_computed_tokens", "Prompt tokens computed (not cached) per request.", qPrefillComputed)
	// The server runs with --kv-cache-metrics: every block the cache tracks reports when it is evicted (see
	// kvCache). vLLM creates these series at start, so they are written from the first scrape on.
	h("vllm:kv_block_lifetime_seconds", "Seconds from a sampled KV-cache block's allocation to its eviction.", qKVBlockLifetime)
	h("vllm:kv_block_idle_before_evict_seconds", "Seconds a sampled KV-cache block went unaccessed before its eviction.", qKVBlockIdle)
	h("vllm:kv_block_reuse_gap_seconds", "Seconds between the last recorded accesses of a sampled KV-cache block, at its eviction.", qKVBlockReuseGap)
	bs := rp.kv.blockSize
	blocks := rp.kv.numBlocks()
	e.gauge("vllm:cache_config_info", "KV-cache configuration.", []label{
		{"block_size", strconv.Itoa(bs)},
		{"cache_dtype", "auto"},
		{"enable_prefix_caching", "True"},
		{"engine", "0"},
		{"gpu_memory_utilization", strconv.FormatFloat(f.cfg.Engine.GPUMemoryUtilization, 'g', -1, 64)},
		{"kv_cache_max_concurrency", pythonFloat(float64(blocks*bs) / float64(f.cfg.Model.MaxModelLen))},
		{"kv_cache_size_tokens", strconv.Itoa(blocks * bs)},
		{"num_cpu_blocks", "None"},
		{"num_gpu_blocks", strconv.Itoa(blocks)},
		{"prefix_caching_hash_algo", "sha256"},
		{"sliding_window", "None"},
	}, 1)
	return e.b.Bytes()
}

func (rp *replica) vllmRoutes(mux *http.ServeMux) {
	f := rp.f
	mux.HandleFunc("GET /metrics", rp.textHandler(rp.vllmMetrics))
	mux.HandleFunc("GET /health", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /ping", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /version", rp.jsonHandler(func(float64) any { return map[string]string{"version": vllmVersion} }))
	mux.HandleFunc("GET /load", rp.jsonHandler(func(float64) any { return map[string]int{"server_load": rp.outstanding()} }))
	mux.HandleFunc("GET /v1/models", rp.jsonHandler(func(float64) any {
		return map[string]any{"object": "list", "data": []map[string]any{{
			"id": f.cfg.Model.Name, "object": "model", "owned_by": "vllm", "root": f.cfg.Model.Name,
			"max_model_len": f.cfg.Model.MaxModelLen, "created": f.epoch.Unix(),
		}}}
	}))
}
