package fleetsim

import (
	"net/http"
)

// llama.cpp's llama-server (--metrics): unlabelled llamacpp:* series printed by C++, /slots, /props and
// /health. The two throughput gauges cover the time since the previous scrape and reset on every scrape.

const llamaBuild = "b6402-3f4e5d6c"

// llamaWindow accumulates llama-server's per-request counters and the window its throughput gauges cover.
type llamaWindow struct {
	promptSeconds, predictedSeconds float64 // totals: prompt processing and generation time of its requests
	winPromptTokens, winPromptSec   float64 // since the last /metrics read
	winGenTokens, winGenSec         float64
}

// llamaFirstToken and llamaFinished mirror where llama-server updates its metrics: prompt totals when a
// slot's prompt is processed, generation totals when its task ends.
func (rp *replica) llamaFirstToken(r *request) {
	d := r.firstToken - r.scheduled
	rp.llama.promptSeconds += d
	rp.llama.winPromptTokens += float64(r.prompt - r.cached)
	rp.llama.winPromptSec += d
}

func (rp *replica) llamaFinished(r *request) {
	d := r.lastToken - r.firstToken
	rp.llama.predictedSeconds += d
	rp.llama.winGenTokens += float64(r.generated)
	rp.llama.winGenSec += d
}

func (rp *replica) llamaMetrics(_ float64) []byte {
	e := &expo{style: styleCpp}
	st := rp.stats
	w := &rp.llama
	rate := func(tokens, sec float64) float64 {
		if sec <= 0 {
			return 0
		}
		return tokens / sec
	}
	header := func(name, typ, help string, v float64) {
		e.header(name, typ, help)
		e.sample(name, nil, v)
	}
	header("llamacpp:prompt_tokens_total", "counter", "Prompt tokens processed (cached ones excluded).", st.promptComputed)
	header("llamacpp:prompt_seconds_total", "counter", "Prompt processing time.", w.promptSeconds)
	header("llamacpp:tokens_predicted_total", "counter", "Generated tokens.", st.generationTokens)
	header("llamacpp:tokens_predicted_seconds_total", "counter", "Generation time.", w.predictedSeconds)
	header("llamacpp:n_decode_total", "counter", "llama_decode() calls.", st.steps)
	header("llamacpp:n_tokens_max", "counter", "Largest number of tokens in one decode.", st.maxStepTokens)
	busy := 0.0
	if st.steps > 0 {
		busy = st.stepSeqs / st.steps
	}
	header("llamacpp:n_busy_slots_per_decode", "gauge", "Average busy slots per llama_decode() call.", busy)
	header("llamacpp:prompt_tokens_cached_total", "counter", "Prompt tokens served from the slot cache.", st.cachedTokens)
	header("llamacpp:prompt_tokens_seconds", "gauge", "Prompt throughput since the previous scrape, tokens/s.", rate(w.winPromptTokens, w.winPromptSec))
	header("llamacpp:predicted_tokens_seconds", "gauge", "Generation throughput since the previous scrape, tokens/s.", rate(w.winGenTokens, w.winGenSec))
	header("llamacpp:kv_cache_usage_ratio", "gauge", "KV-cache usage; 1 means full.", rp.kv.usage())
	header("llamacpp:kv_cache_tokens", "gauge", "KV-cache tokens.", float64(rp.kv.usedBlocks()*rp.kv.blockSize))
	header("llamacpp:requests_processing", "gauge", "Requests being processed.", float64(len(rp.running)))
	header("llamacpp:requests_deferred", "gauge", "Requests deferred for want of a free slot.", float64(len(rp.waiting)))
	// The reset that makes these gauges unreliable with two scrapers, kept on purpose.
	w.winPromptTokens, w.winPromptSec, w.winGenTokens, w.winGenSec = 0, 0, 0, 0
	return e.b.Bytes()
}

func (rp *replica) llamaSlots(float64) any {
	nCtx := rp.maxCtx
	slots := make([]map[string]any, rp.maxSeqs)
	for i := range slots {
		s := map[string]any{
			"id": i, "id_task": -1, "n_ctx": nCtx, "speculative": false, "is_processing": false,
			"params": map[string]any{}, "next_token": map[string]any{},
		}
		if i < len(rp.running) {
			r := rp.running[i]
			s["id_task"] = r.seq
			s["is_processing"] = true
			s["params"] = map[string]any{"n_predict": r.maxTokens, "temperature": 0.7, "top_p": 0.95, "stream": true}
			s["next_token"] = map[string]any{
				"has_next_token": true, "has_new_line": false,
				"n_remain": r.maxTokens - r.generated, "n_decoded": r.generated, "stopping_word": "",
			}
		}
		slots[i] = s
	}
	return slots
}

func (rp *replica) llamaRoutes(mux *http.ServeMux) {
	f := rp.f
	mux.HandleFunc("GET /metrics", rp.textHandler(rp.llamaMetrics))
	mux.HandleFunc("GET /slots", rp.jsonHandler(rp.llamaSlots))
	mux.HandleFunc("GET /health", rp.jsonHandler(func(float64) any { return map[string]string{"status": "ok"} }))
	mux.HandleFunc("GET /props", rp.jsonHandler(func(float64) any {
		return map[string]any{
			"default_generation_settings": map[string]any{"n_ctx": rp.maxCtx, "params": map[string]any{"temperature": 0.8}},
			"total_slots":                 rp.maxSeqs, "model_path": "/models/" + f.cfg.Model.Name + ".gguf",
			"model_alias": f.cfg.Model.Name, "build_info": llamaBuild, "is_sleeping": false,
		}
	}))
}
