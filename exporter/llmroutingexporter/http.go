package llmroutingexporter

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

func (e *routingExporter) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /model-server/{replica}/metrics", e.modelServer)
	mux.HandleFunc("GET /v1/replicas", e.replicas)
	mux.HandleFunc("GET /v1/pools/{model...}", e.pools)
	return mux
}

// view is a replica as served at one moment: staleness applied.
type view struct {
	Replica       string             `json:"replica"`
	Model         string             `json:"model"`
	Engine        string             `json:"engine"`
	Stale         bool               `json:"stale"`
	Healthy       bool               `json:"healthy"`
	TelemetryAge  *float64           `json:"telemetry_age_seconds"`
	SignalsAge    *float64           `json:"signals_age_seconds"`
	HealthScore   *float64           `json:"health_score"`
	RoutingScore  *float64           `json:"routing_score"`
	Recommended   bool               `json:"recommended"`
	Components    map[string]float64 `json:"health_components,omitempty"`
	Waiting       *float64           `json:"waiting_requests"`
	Running       *float64           `json:"running_requests"`
	KVUtilization *float64           `json:"kv_cache_utilization"`
}

func opt(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func age(now, at time.Time) *float64 {
	if at.IsZero() {
		return nil
	}
	a := math.Round(now.Sub(at).Seconds()*1000) / 1000
	return &a
}

// serve returns a replica as a router may use it: past the staleness limit (or never scraped) it is
// unhealthy with a routing score of 0, whatever it said last.
func (e *routingExporter) serve(r *replica, now time.Time) view {
	v := view{
		Replica: r.Replica, Model: r.Model, Engine: r.Engine, TelemetryAge: age(now, r.EngineUpdated), SignalsAge: age(now, r.SignalsUpdated),
		HealthScore: opt(r.Health), RoutingScore: opt(r.Routing), Recommended: r.Recommended, Components: r.Components,
		Waiting: opt(r.Waiting), Running: opt(r.Running), KVUtilization: opt(r.KVUtilization),
	}
	v.Stale = r.EngineUpdated.IsZero() || now.Sub(r.EngineUpdated) > e.cfg.Stale
	if !r.SignalsUpdated.IsZero() && now.Sub(r.SignalsUpdated) > e.cfg.Stale {
		v.HealthScore, v.RoutingScore, v.Recommended = nil, nil, false // old scores are not today's scores
	}
	if v.Stale {
		zero := 0.0
		v.HealthScore, v.RoutingScore, v.Recommended, v.Components = &zero, &zero, false, map[string]float64{"telemetry": 0}
	}
	v.Healthy = !v.Stale && v.HealthScore != nil && *v.HealthScore > 0
	return v
}

func (e *routingExporter) replicas(w http.ResponseWriter, _ *http.Request) {
	now := e.now()
	s := e.state.Load()
	out := []view{}
	for _, r := range sortedReplicas(s) {
		out = append(out, e.serve(r, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{"replicas": out, "stale_after_seconds": e.cfg.Stale.Seconds()})
}

// pools serves /v1/pools/{model}/recommendation and /v1/pools/{model}/scale (model names hold slashes).
func (e *routingExporter) pools(w http.ResponseWriter, req *http.Request) {
	rest := req.PathValue("model")
	var model, what string
	switch {
	case strings.HasSuffix(rest, "/recommendation"):
		model, what = strings.TrimSuffix(rest, "/recommendation"), "recommendation"
	case strings.HasSuffix(rest, "/scale"):
		model, what = strings.TrimSuffix(rest, "/scale"), "scale"
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "use /v1/pools/{model}/recommendation or /v1/pools/{model}/scale"})
		return
	}
	if m, err := url.PathUnescape(model); err == nil {
		model = m
	}
	now := e.now()
	s := e.state.Load()
	if what == "scale" {
		e.scale(w, s, model, now)
		return
	}
	e.recommend(w, s, model, now)
}

type candidate struct {
	Replica      string   `json:"replica"`
	RoutingScore *float64 `json:"routing_score"`
	Stale        bool     `json:"stale"`
}

// recommend names the fresh replica with the best routing score (llm_signals'; where a replica has none
// fresh, one computed the same way from its queue and KV cache) and says why.
func (e *routingExporter) recommend(w http.ResponseWriter, s *snapshot, model string, now time.Time) {
	var cands []candidate
	best, bestScore := "", -1.0
	var bestView view
	for _, r := range sortedReplicas(s) {
		if r.Model != model {
			continue
		}
		v := e.serve(r, now)
		score := v.RoutingScore
		if score == nil && !v.Stale && v.KVUtilization != nil && v.Waiting != nil {
			computed := math.Max(0, 1-*v.KVUtilization) / (1 + *v.Waiting)
			score = &computed
		}
		cands = append(cands, candidate{Replica: r.Replica, RoutingScore: score, Stale: v.Stale})
		if !v.Stale && score != nil && *score > bestScore {
			best, bestScore, bestView = r.Replica, *score, v
		}
	}
	if len(cands) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no replica serves model %q", model)})
		return
	}
	if best == "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"model": model, "error": "no replica has fresh telemetry", "candidates": cands})
		return
	}
	why := fmt.Sprintf("highest routing score %.2f", bestScore)
	if bestView.Waiting != nil && bestView.KVUtilization != nil {
		why += fmt.Sprintf(": %.0f waiting, KV cache %.0f%% used", *bestView.Waiting, 100**bestView.KVUtilization)
	}
	sort.SliceStable(cands, func(i, j int) bool { return scoreOf(cands[i]) > scoreOf(cands[j]) })
	writeJSON(w, http.StatusOK, map[string]any{"model": model, "replica": best, "routing_score": bestScore, "why": why, "candidates": cands})
}

func scoreOf(c candidate) float64 {
	if c.RoutingScore == nil || c.Stale {
		return -1
	}
	return *c.RoutingScore
}

// scale answers KEDA's metrics-api scaler: desiredReplicas is the value to read (valueLocation).
func (e *routingExporter) scale(w http.ResponseWriter, s *snapshot, model string, now time.Time) {
	p, ok := s.pools.Get(model)
	if !ok || poolExpired(p, now, e.cfg.PoolExpiry) {
		// An expired pool that the writer has not swept out yet answers as it will once it has.
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf(
			"no scaling signal for model %q (is llm_signals feeding this exporter? a pool is forgotten after pool_expiry, %s, without a word about its model)",
			model, e.cfg.PoolExpiry)})
		return
	}
	body := map[string]any{
		"model": model, "desiredReplicas": opt(p.Desired), "currentReplicas": opt(p.Current),
		"forecastReplicas": opt(p.Forecast), "reason": p.Reason, "saturationEtaSeconds": opt(p.SaturationETA), "ageSeconds": age(now, p.Updated),
	}
	if now.Sub(p.Updated) > e.cfg.Stale {
		// An autoscaler must not act on an old figure: KEDA keeps the current size (or its fallback) on an error.
		body["error"] = "the scaling signal is stale"
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// modelServer serves one replica in the Gateway API Inference Extension's model-server protocol
// (proposal 003), in vLLM's metric names, whatever the engine behind it.
func (e *routingExporter) modelServer(w http.ResponseWriter, req *http.Request) {
	key := req.PathValue("replica")
	if k, err := url.PathUnescape(key); err == nil {
		key = k
	}
	s := e.state.Load()
	r, ok := s.replicas.Get(key)
	if !ok {
		http.Error(w, fmt.Sprintf("unknown replica %q (GET /v1/replicas lists them)", key), http.StatusNotFound)
		return
	}
	now := e.now()
	v := e.serve(r, now)
	if v.Stale {
		// A failed scrape is what an endpoint picker already treats as saturated; old numbers would look fresh.
		http.Error(w, fmt.Sprintf("telemetry of %s is stale (last engine metrics %s s ago)", key, ageText(v.TelemetryAge)), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var b strings.Builder
	fmt.Fprintf(&b, "# servescope: replica %s, engine %s, telemetry age %s s\n", r.Replica, r.Engine, ageText(v.TelemetryAge))
	model := `model_name="` + escape(r.Model) + `"`
	gauge := func(name, help, labels string, value float64) {
		if math.IsNaN(value) {
			return
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s{%s} %s\n", name, help, name, name, labels, strconv.FormatFloat(value, 'g', -1, 64))
	}
	gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.", model, r.Waiting)
	gauge("vllm:num_requests_running", "Requests in the running batch.", model, r.Running)
	gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 0 to 1.", model, r.KVUtilization)
	if !math.IsNaN(r.BlockSize) && !math.IsNaN(r.NumBlocks) {
		gauge("vllm:cache_config_info", "KV-cache configuration (value 1).",
			fmt.Sprintf(`block_size="%.0f",num_gpu_blocks="%.0f"`, r.BlockSize, r.NumBlocks), 1)
	}
	if r.LoRA != nil {
		gauge("vllm:lora_requests_info", "LoRA adapters in use; the value is the Unix time of the last update.",
			fmt.Sprintf(`max_lora="%s",running_lora_adapters="%s",waiting_lora_adapters="%s"`, escape(r.LoRA.Max), escape(r.LoRA.Running), escape(r.LoRA.Waiting)), r.LoRA.Updated)
	}
	_, _ = w.Write([]byte(b.String()))
}

func ageText(a *float64) string {
	if a == nil {
		return "unknown"
	}
	return strconv.FormatFloat(*a, 'f', 1, 64)
}

func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}
