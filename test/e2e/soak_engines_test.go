package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The soak's fake vLLM servers. Each listens on a fixed loopback address for the whole soak (so it can go
// away and come back where the collector's receiver expects it) and misbehaves in one way, on a schedule.
const (
	engineSteady     = "steady"     // a well-behaved server: the control
	engineRestarting = "restarting" // the process restarts: every counter starts again from zero
	engineFlapping   = "flapping"   // two servers behind one endpoint: scrapes alternate between them
	engineVanishing  = "vanishing"  // the server goes away (connection refused) for a while, then returns
	engineGarbage    = "garbage"    // truncated bodies, NaN/Inf values, HTML error pages, duplicate series
)

var soakEngineBehaviours = []string{engineSteady, engineRestarting, engineFlapping, engineVanishing, engineGarbage}

// How often the misbehaviours come round: short enough that a two-minute soak sees several of each.
const (
	engineRestartEvery = 15 * time.Second
	engineVanishEvery  = 20 * time.Second
	engineVanishFor    = 6 * time.Second
)

const soakEngineModel = "soak/Qwen2.5-0.5B-Instruct"

// soakEngine is one fake vLLM server. Its counters grow with the time since its (simulated) process start.
type soakEngine struct {
	behaviour string
	addr      string // host:port, also the service.instance.id the vllm receiver gives its metrics

	mu      sync.Mutex
	srv     *http.Server
	up      bool
	lives   [2]time.Time // process starts; a flapping endpoint has two processes behind it
	scrapes int

	// figures
	restarts, outages, garbageServed, flips int
}

func newSoakEngine(behaviour string) (*soakEngine, error) {
	now := time.Now()
	// The second process behind a flapping endpoint has been up an hour longer: its counters are far ahead.
	e := &soakEngine{behaviour: behaviour, lives: [2]time.Time{now, now.Add(-time.Hour)}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.addr = ln.Addr().String()
	e.serve(ln)
	return e, nil
}

func (e *soakEngine) url() string { return "http://" + e.addr }

func (e *soakEngine) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(e.handle), ReadHeaderTimeout: 5 * time.Second}
	e.mu.Lock()
	e.srv, e.up = srv, true
	e.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// run drives the engine's schedule until ctx ends.
func (e *soakEngine) run(ctx context.Context) {
	var every time.Duration
	switch e.behaviour {
	case engineRestarting:
		every = engineRestartEvery
	case engineVanishing:
		every = engineVanishEvery
	default:
		return // steady, flapping and garbage misbehave per scrape
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		switch e.behaviour {
		case engineRestarting:
			e.mu.Lock()
			e.lives[0] = time.Now()
			e.restarts++
			e.mu.Unlock()
		case engineVanishing:
			e.goAway()
			select {
			case <-ctx.Done():
				return
			case <-time.After(engineVanishFor):
			}
			e.comeBack(ctx)
		}
	}
}

// goAway closes the listener: scrapes get connection refused until comeBack.
func (e *soakEngine) goAway() {
	e.mu.Lock()
	srv := e.srv
	e.up = false
	e.outages++
	e.mu.Unlock()
	_ = srv.Close()
}

// comeBack listens again on the same address, as a restarted server would (a fresh process: counters at 0).
func (e *soakEngine) comeBack(ctx context.Context) {
	for ctx.Err() == nil {
		ln, err := net.Listen("tcp", e.addr)
		if err == nil {
			e.mu.Lock()
			e.lives[0] = time.Now()
			e.mu.Unlock()
			e.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond) // the port is still being released
	}
}

func (e *soakEngine) close() {
	e.mu.Lock()
	srv, up := e.srv, e.up
	e.up = false
	e.mu.Unlock()
	if up {
		_ = srv.Close()
	}
}

func (e *soakEngine) handle(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/version":
		_, _ = w.Write([]byte(`{"version":"0.11.2"}`))
		return
	case "/metrics":
	default:
		http.NotFound(w, r)
		return
	}
	now := time.Now()
	e.mu.Lock()
	e.scrapes++
	n := e.scrapes
	life := e.lives[0]
	if e.behaviour == engineFlapping && n%2 == 0 {
		life = e.lives[1]
		e.flips++
	}
	garbage := ""
	if e.behaviour == engineGarbage {
		// Every other scrape is good, so the receiver and the state see the engine come and go.
		garbage = []string{"", "truncated", "", "nan_inf", "", "html", "", "duplicates", "", "html_503"}[n%10]
		if garbage != "" {
			e.garbageServed++
		}
	}
	e.mu.Unlock()

	page := vllmSoakPage(life, now, garbage == "nan_inf", garbage == "duplicates")
	switch garbage {
	case "truncated":
		// Cut mid-line, as a server killed while writing would leave it.
		page = page[:len(page)*3/5]
	case "html":
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body><h1>Service Unavailable</h1><p>upstream connect error</p></body></html>\n"))
		return
	case "html_503":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("<!DOCTYPE html>\n<html><head><title>503</title></head><body>overloaded</body></html>\n"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(page))
}

// vllmSoakPage writes a vLLM V1 /metrics page for a process started at life: the families llm_normalize
// maps and llm_root_cause reads (scheduler, KV cache, prefix cache, preemptions, tokens, requests, latency
// histograms), labelled as vLLM labels them, counters with their _created companions. badValues puts NaN and
// +/-Inf where numbers go; duplicates writes every sample twice with different values.
func vllmSoakPage(life, now time.Time, badValues, duplicates bool) string {
	up := now.Sub(life).Seconds()
	created := float64(life.UnixNano()) / 1e9
	labels := fmt.Sprintf(`engine="0",model_name=%q`, soakEngineModel)
	var b strings.Builder
	sample := func(name, extra string, v float64) {
		ls := labels
		if extra != "" {
			ls += "," + extra
		}
		fmt.Fprintf(&b, "%s{%s} %s\n", name, ls, promFloat(v))
		if duplicates {
			fmt.Fprintf(&b, "%s{%s} %s\n", name, ls, promFloat(v*2+1))
		}
	}
	header := func(name, kind, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
		if duplicates {
			fmt.Fprintf(&b, "# TYPE %s %s\n", name, kind)
		}
	}
	bad := func(v, replacement float64) float64 {
		if badValues {
			return replacement
		}
		return v
	}
	gauge := func(name, help string, v float64) {
		header(name, "gauge", help)
		sample(name, "", v)
	}
	counter := func(name, help string, v float64) {
		header(name+"_total", "counter", help)
		sample(name+"_total", "", v)
		header(name+"_created", "gauge", help)
		sample(name+"_created", "", created)
	}
	histogram := func(name, help string, bounds []float64, count, mean float64) {
		header(name, "histogram", help)
		for _, le := range bounds {
			// An exponential-ish spread of observations around the mean, cumulative.
			share := 1 - math.Exp(-le/mean)
			sample(name+"_bucket", fmt.Sprintf(`le="%s"`, promFloat(le)), math.Floor(count*share))
		}
		sample(name+"_bucket", `le="+Inf"`, bad(count, math.NaN()))
		sample(name+"_count", "", count)
		sample(name+"_sum", "", bad(count*mean, math.Inf(1)))
		header(name+"_created", "gauge", help)
		sample(name+"_created", "", created)
	}

	requests := 3.5 * up
	gauge("vllm:num_requests_running", "Requests in model execution batches.", bad(math.Round(6+4*math.Sin(up/9)), math.NaN()))
	gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.", bad(math.Max(0, math.Round(5*math.Sin(up/7))), math.Inf(1)))
	gauge("vllm:kv_cache_usage_perc", "KV-cache usage; 1 means full.", bad(0.55+0.4*math.Sin(up/11), math.Inf(-1)))
	counter("vllm:num_preemptions", "Preemptions since start.", math.Floor(up/40))
	counter("vllm:prefix_cache_queries", "Prefix-cache lookups, in tokens.", bad(900*up, math.Inf(1)))
	counter("vllm:prefix_cache_hits", "Prefix-cache hits, in tokens.", bad(400*up, math.NaN()))
	counter("vllm:prompt_tokens", "Prefill tokens processed.", 900*up)
	counter("vllm:generation_tokens", "Generation tokens processed.", bad(300*up, math.Inf(-1)))
	header("vllm:request_success_total", "counter", "Finished requests by finish reason.")
	sample("vllm:request_success_total", `finished_reason="stop"`, math.Floor(requests*0.85))
	sample("vllm:request_success_total", `finished_reason="length"`, math.Floor(requests*0.15))
	sample("vllm:request_success_total", `finished_reason="abort"`, 0)
	histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency.", []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60}, requests, 1.4)
	histogram("vllm:time_to_first_token_seconds", "Time to first token.", []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}, requests, 0.3)
	histogram("vllm:request_queue_time_seconds", "Time in the WAITING phase.", []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60}, requests, 0.2)
	return b.String()
}

// promFloat writes a float as prometheus_client does (NaN, +Inf, -Inf spelled its way).
func promFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return fmt.Sprintf("%g", v)
}

// startSoakEngines starts one engine per behaviour and their schedules; stop closes them all.
func startSoakEngines(ctx context.Context) (engines []*soakEngine, stop func(), err error) {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	stop = func() {
		cancel()
		wg.Wait()
		for _, e := range engines {
			e.close()
		}
	}
	for _, b := range soakEngineBehaviours {
		e, err := newSoakEngine(b)
		if err != nil {
			stop()
			return nil, nil, errors.Join(fmt.Errorf("starting the %s engine", b), err)
		}
		engines = append(engines, e)
		wg.Add(1)
		go func() { defer wg.Done(); e.run(ctx) }()
	}
	return engines, stop, nil
}
