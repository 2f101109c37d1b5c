// Command servescope-bench measures the built collector against the stock collector pipeline doing the same
// work, in one invocation on one machine: process CPU seconds and peak RSS, read from /proc, for pairs of
// collectors run one after the other on the same load. It prints a Markdown table (and writes it with -out).
//
//  1. scrape path: N vLLM targets serving a real capture, scraped every second, by the vllm receiver +
//     llm_normalize, and by the stock prometheus receiver + the stock transform processor doing the same
//     renames (its OTTL statements generated from schema/);
//  2. span path: engine-shaped request spans over OTLP/HTTP at a fixed rate, through llm_root_cause, and
//     through the stock span_metrics connector, measured once llm_root_cause's request-id caches are full
//     (the warm-up is lengthened to that when -warmup is shorter);
//  3. sidecar footprint: the embedded default configuration, idle and with one engine scraped every second and
//     100 requests a second of spans.
//
// -only runs some of the paths (scrape, spans, flood, sidecar; comma-separated). -cpuprofile DIR adds the
// pprof extension to every collector configuration and writes a CPU profile of each measured run to
// DIR/<path>-<ours|stock>-<run>.pprof, to see where a path's time goes.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.yaml.in/yaml/v3"

	"github.com/servescope/servescope/connector/llmrootcauseconnector"
	"github.com/servescope/servescope/internal/schema"
)

type options struct {
	bin, capture, out string
	duration, warmup  time.Duration
	targets           int
	spanRate          int
	runs              int
	only              map[string]bool // the paths to run; empty runs them all
	cpuProfiles       string          // where to write a CPU profile of each measured run; "" for none
}

// paths are the names -only takes.
var paths = []string{"scrape", "spans", "flood", "sidecar"}

// measures tells whether the path is to be measured.
func (o options) measures(path string) bool { return len(o.only) == 0 || o.only[path] }

func parseOnly(list string) (map[string]bool, error) {
	only := map[string]bool{}
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(paths, p) {
			return nil, fmt.Errorf("-only: unknown path %q (the paths are %s)", p, strings.Join(paths, ", "))
		}
		only[p] = true
	}
	return only, nil
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/otelcol-servescope", "the collector binary")
	fixtures := os.Getenv("SERVESCOPE_FIXTURES")
	if fixtures == "" {
		fixtures = "testdata"
	}
	flag.StringVar(&o.capture, "capture", filepath.Join(fixtures, "vllm", "stormlog_vllm_v1_q05_c08_metrics_post.txt"), "a vLLM /metrics capture to serve")
	flag.StringVar(&o.out, "out", "", "also write the table to this file")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long each measured run lasts")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "how long each collector runs before measuring")
	flag.IntVar(&o.targets, "targets", 20, "simulated vLLM targets for the scrape path")
	flag.IntVar(&o.spanRate, "span-rate", 10000, "spans per second for the span path")
	flag.IntVar(&o.runs, "runs", 3, "runs of each configuration; the table shows the medians")
	only := flag.String("only", "", "measure only these paths, comma-separated: "+strings.Join(paths, ", ")+" (default all)")
	flag.StringVar(&o.cpuProfiles, "cpuprofile", "", "write a CPU profile of each measured run into this directory (the collectors get the pprof extension)")
	flag.Parse()
	var err error
	if o.only, err = parseOnly(*only); err != nil {
		fmt.Fprintln(os.Stderr, "servescope-bench:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "servescope-bench:", err)
		os.Exit(1)
	}
}

// usage is what one collector process used over the measured window.
type usage struct {
	cpuSeconds float64
	peakRSSMiB float64
	note       string
}

func run(o options) error {
	capture, err := os.ReadFile(o.capture)
	if err != nil {
		return fmt.Errorf("reading the capture (set -capture): %w", err)
	}
	sch, err := schema.Default()
	if err != nil {
		return err
	}
	var rows []string
	add := func(format string, args ...any) { rows = append(rows, fmt.Sprintf(format, args...)) }
	cores := strconv.Itoa(numCPU())
	add("Measured by `make bench` (`go run ./cmd/servescope-bench`), %s, %s cores; each figure the median of %d runs of %s "+
		"after %s of warm-up; CPU is the collector process's user+system time over the run, RSS its peak.\n",
		time.Now().UTC().Format("2006-01-02"), cores, o.runs, o.duration, o.warmup)

	if o.cpuProfiles != "" {
		if err := os.MkdirAll(o.cpuProfiles, 0o755); err != nil {
			return err
		}
	}
	if o.measures("scrape") || o.measures("spans") || o.measures("flood") {
		add("| path | servescope | CPU s | peak RSS | stock | CPU s | peak RSS | CPU ratio |")
		add("|---|---|---|---|---|---|---|---|")
	}

	// 1. scrape path
	if o.measures("scrape") {
		targets := make([]string, o.targets)
		for i := range targets {
			srv, addr, err := serve(capture)
			if err != nil {
				return err
			}
			defer srv.Close()
			targets[i] = addr
		}
		ours, err := measureMedian(o, "scrape-ours", scrapeOurs(targets), nil)
		if err != nil {
			return err
		}
		stock, err := measureMedian(o, "scrape-stock", scrapeStock(targets, sch), nil)
		if err != nil {
			return err
		}
		add("| scrape: %d vLLM targets at 1 s | `vllm` + `llm_normalize` | %.2f | %.0f MiB | `prometheus` + `transform` (%d OTTL renames) | %.2f | %.0f MiB | %.2f× |",
			o.targets, ours.cpuSeconds, ours.peakRSSMiB, len(transformStatements(sch)), stock.cpuSeconds, stock.peakRSSMiB, ours.cpuSeconds/stock.cpuSeconds)
	}

	// 2. span path at a fixed rate
	if o.measures("spans") {
		spans := o
		spans.warmup = max(o.warmup, requestIDCacheFill(o.spanRate))
		ours, err := measureMedian(spans, "spans-ours", spansOurs(), func(otlp string, stop <-chan struct{}) string { return sendSpans(otlp, o.spanRate, stop) })
		if err != nil {
			return err
		}
		stock, err := measureMedian(spans, "spans-stock", spansStock(), func(otlp string, stop <-chan struct{}) string { return sendSpans(otlp, o.spanRate, stop) })
		if err != nil {
			return err
		}
		add("| spans: %d/s over OTLP/HTTP, after %s of warm-up | `llm_root_cause` (%s) | %.2f | %.0f MiB | `span_metrics` (%s) | %.2f | %.0f MiB | %.2f× |",
			o.spanRate, spans.warmup, ours.note, ours.cpuSeconds, ours.peakRSSMiB, stock.note, stock.cpuSeconds, stock.peakRSSMiB, ours.cpuSeconds/stock.cpuSeconds)
	}

	// 2b. the highest rate each sustains: as many senders as it takes, for the run, spans accepted per second
	if o.measures("flood") {
		oursMax, err := measureMedian(o, "flood-ours", spansOurs(), func(otlp string, stop <-chan struct{}) string { return flood(otlp, stop) })
		if err != nil {
			return err
		}
		stockMax, err := measureMedian(o, "flood-stock", spansStock(), func(otlp string, stop <-chan struct{}) string { return flood(otlp, stop) })
		if err != nil {
			return err
		}
		add("| spans: as fast as accepted (4 senders) | `llm_root_cause`: %s | %.2f | %.0f MiB | `span_metrics`: %s | %.2f | %.0f MiB | %.2f× |",
			oursMax.note, oursMax.cpuSeconds, oursMax.peakRSSMiB, stockMax.note, stockMax.cpuSeconds, stockMax.peakRSSMiB, oursMax.cpuSeconds/stockMax.cpuSeconds)
	}

	// 3. sidecar footprint: the default configuration
	if o.measures("sidecar") {
		idle, err := measureMedian(o, "sidecar-idle", sidecar(""), nil)
		if err != nil {
			return err
		}
		srv, engineAddr, err := serve(capture)
		if err != nil {
			return err
		}
		defer srv.Close()
		busy, err := measureMedian(o, "sidecar-busy", sidecar("http://"+engineAddr), func(otlp string, stop <-chan struct{}) string { return sendSpans(otlp, 200, stop) })
		if err != nil {
			return err
		}
		add("\n| sidecar (embedded default configuration) | CPU (%% of one core) | peak RSS |")
		add("|---|---|---|")
		add("| idle (engine unreachable, no spans) | %.2f%% | %.0f MiB |", 100*idle.cpuSeconds/o.duration.Seconds(), idle.peakRSSMiB)
		add("| one engine scraped every second (the default is 10 s; 1 s here), 100 requests/s of spans (gateway + engine span each) | %.2f%% | %.0f MiB |",
			100*busy.cpuSeconds/o.duration.Seconds(), busy.peakRSSMiB)
	}

	table := strings.Join(rows, "\n") + "\n"
	fmt.Print(table)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(table), 0o644)
	}
	return nil
}

func numCPU() int {
	n := 0
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}

// serve answers /metrics with body on a loopback port.
func serve(body []byte) (*http.Server, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			_, _ = w.Write([]byte(`{"version":"0.11.2"}`))
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(l) }()
	return srv, l.Addr().String(), nil
}

// givenAddrs are the addresses freeAddr has returned: each is closed before its collector listens on it, so
// the kernel may offer it again meanwhile, and one collector given two equal addresses does not start.
var givenAddrs = map[string]bool{}

// freeAddr returns a loopback address that is free now and that it has not returned before (one goroutine).
func freeAddr() string {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !givenAddrs[addr] {
			givenAddrs[addr] = true
			return addr
		}
	}
}

// config builds a collector configuration for an OTLP address.
type config func(otlp string) string

// measureMedian runs measure o.runs times and keeps the median CPU and RSS; name (the path and side) names
// the runs' profiles.
func measureMedian(o options, name string, cfg config, load func(otlp string, stop <-chan struct{}) string) (usage, error) {
	var runs []usage
	for i := 0; i < max(1, o.runs); i++ {
		profile := ""
		if o.cpuProfiles != "" {
			profile = filepath.Join(o.cpuProfiles, fmt.Sprintf("%s-%d.pprof", name, i+1))
		}
		u, err := measure(o, cfg, load, profile)
		if err != nil {
			return usage{}, err
		}
		runs = append(runs, u)
	}
	cpu := make([]float64, len(runs))
	rss := make([]float64, len(runs))
	for i, u := range runs {
		cpu[i], rss[i] = u.cpuSeconds, u.peakRSSMiB
	}
	return usage{cpuSeconds: median(cpu), peakRSSMiB: median(rss), note: runs[len(runs)-1].note}, nil
}

// requestIDCacheFill is how long the span load takes to fill llm_root_cause's request-id caches (one entry
// per gateway span, half the spans sent), with a fifth more for margin. The span path is measured after
// that: before, a run measures the caches growing to their bound, which a collector pays once, not per span.
func requestIDCacheFill(spanRate int) time.Duration {
	cfg, ok := llmrootcauseconnector.NewFactory().CreateDefaultConfig().(*llmrootcauseconnector.Config)
	if !ok || spanRate < 2 {
		return 0
	}
	perSecond := float64(spanRate / 2)
	return time.Duration(1.2 * float64(cfg.RequestIDCache) / perSecond * float64(time.Second)).Round(time.Second)
}

func median(v []float64) float64 {
	sorted := append([]float64(nil), v...)
	sort.Float64s(sorted)
	return sorted[len(sorted)/2]
}

// measure starts the collector with cfg, waits the warm-up, then measures CPU and peak RSS over the run while
// load (if any) runs against its OTLP endpoint. With a profile path, the collector runs the pprof extension
// and a CPU profile of the measured run is written there.
func measure(o options, cfg config, load func(otlp string, stop <-chan struct{}) string, profile string) (usage, error) {
	otlp := freeAddr()
	dir, err := os.MkdirTemp("", "servescope-bench")
	if err != nil {
		return usage{}, err
	}
	defer os.RemoveAll(dir)
	text := cfg(otlp)
	pprofAddr := ""
	if profile != "" {
		pprofAddr = freeAddr()
		if text, err = withPprof(text, pprofAddr); err != nil {
			return usage{}, err
		}
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return usage{}, err
	}
	var logs bytes.Buffer
	cmd := exec.Command(o.bin, "--config", path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return usage{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	stop := make(chan struct{})
	note := make(chan string, 1)
	if load != nil {
		if err := waitListening(otlp, 30*time.Second); err != nil {
			return usage{}, fmt.Errorf("%w; collector output: %s", err, logs.String())
		}
		go func() { note <- load(otlp, stop) }()
	}
	time.Sleep(o.warmup)
	if cmd.ProcessState != nil {
		return usage{}, fmt.Errorf("collector exited: %s", logs.String())
	}
	profiled := make(chan error, 1)
	if profile != "" {
		if err := waitListening(pprofAddr, 30*time.Second); err != nil {
			return usage{}, fmt.Errorf("%w; collector output: %s", err, logs.String())
		}
	}
	before, err := cpuSeconds(cmd.Process.Pid)
	if err != nil {
		return usage{}, fmt.Errorf("%w; collector output: %s", err, logs.String())
	}
	if profile != "" {
		go func() { profiled <- fetchProfile(pprofAddr, o.duration, profile) }()
	}
	time.Sleep(o.duration)
	after, err := cpuSeconds(cmd.Process.Pid)
	if err != nil {
		return usage{}, err
	}
	if profile != "" {
		if err := <-profiled; err != nil {
			return usage{}, err
		}
	}
	u := usage{cpuSeconds: after - before, peakRSSMiB: peakRSS(cmd.Process.Pid)}
	close(stop)
	if load != nil {
		u.note = <-note
	}
	return u, nil
}

// withPprof adds the pprof extension, listening on addr, to a collector configuration.
func withPprof(text, addr string) (string, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		return "", fmt.Errorf("reading the collector configuration: %w", err)
	}
	extensions, _ := cfg["extensions"].(map[string]any)
	if extensions == nil {
		extensions = map[string]any{}
	}
	extensions["pprof"] = map[string]any{"endpoint": addr}
	cfg["extensions"] = extensions
	service, _ := cfg["service"].(map[string]any)
	if service == nil {
		return "", fmt.Errorf("the collector configuration has no service section")
	}
	enabled, _ := service["extensions"].([]any)
	service["extensions"] = append(enabled, "pprof")
	out, err := yaml.Marshal(cfg)
	return string(out), err
}

// fetchProfile asks the pprof extension for a CPU profile of the next d (whole seconds, at least one) and
// writes it to path.
func fetchProfile(addr string, d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	client := &http.Client{Timeout: d + 30*time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		return fmt.Errorf("fetching the CPU profile: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("fetching the CPU profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the CPU profile: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return os.WriteFile(path, body, 0o644)
}

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the collector did not listen on %s within %s", addr, timeout)
}

// cpuSeconds is a process's user plus system time, from /proc/<pid>/stat (fields 14 and 15, in clock ticks).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

// peakRSS is VmHWM from /proc/<pid>/status, in MiB.
func peakRSS(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

const quiet = `
  telemetry:
    logs:
      level: warn
    metrics:
      level: none`

func scrapeOurs(targets []string) config {
	return func(string) string {
		var recv, names strings.Builder
		for i, t := range targets {
			fmt.Fprintf(&recv, "  vllm/%d:\n    endpoint: http://%s\n    collection_interval: 1s\n", i, t)
			fmt.Fprintf(&names, "vllm/%d, ", i)
		}
		return fmt.Sprintf("receivers:\n%sprocessors:\n  llm_normalize: {}\nexporters:\n  nop: {}\nservice:%s\n  pipelines:\n    metrics:\n      receivers: [%s]\n      processors: [llm_normalize]\n      exporters: [nop]\n",
			recv.String(), quiet, strings.TrimSuffix(names.String(), ", "))
	}
}

// transformStatements renames every vLLM family the schema maps, as a stock pipeline would have to.
func transformStatements(sch *schema.Schema) []string {
	var out []string
	for _, m := range sch.Metrics {
		for _, src := range m.Sources[schema.EngineVLLM] {
			name := src.Name
			// the prometheus receiver drops a counter's _total suffix
			out = append(out, fmt.Sprintf(`set(metric.name, "%s") where metric.name == "%s"`, m.Name, strings.TrimSuffix(name, "_total")))
		}
	}
	return out
}

func scrapeStock(targets []string, sch *schema.Schema) config {
	return func(string) string {
		quoted := make([]string, len(targets))
		for i, t := range targets {
			quoted[i] = `"` + t + `"`
		}
		var stmts strings.Builder
		for _, s := range transformStatements(sch) {
			fmt.Fprintf(&stmts, "          - '%s'\n", s)
		}
		return fmt.Sprintf(`receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: vllm
          scrape_interval: 1s
          static_configs:
            - targets: [%s]
processors:
  transform:
    metric_statements:
      - context: metric
        statements:
%s          - 'replace_pattern(metric.name, "^vllm:", "vllm.")'
exporters:
  nop: {}
service:%s
  pipelines:
    metrics:
      receivers: [prometheus]
      processors: [transform]
      exporters: [nop]
`, strings.Join(quoted, ", "), stmts.String(), quiet)
	}
}

func spansOurs() config {
	return func(otlp string) string {
		return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
connectors:
  llm_root_cause:
    max_wait: 0s
    slo:
      default: {ttft: 1s}
exporters:
  nop: {}
service:%s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [llm_root_cause]
    traces/out:
      receivers: [llm_root_cause]
      exporters: [nop]
    metrics/out:
      receivers: [llm_root_cause]
      exporters: [nop]
`, otlp, quiet)
	}
}

func spansStock() config {
	return func(otlp string) string {
		return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
connectors:
  span_metrics: {}
exporters:
  nop: {}
service:%s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [span_metrics]
    metrics/out:
      receivers: [span_metrics]
      exporters: [nop]
`, otlp, quiet)
	}
}

// sidecar is the embedded default configuration (no --config), endpoints moved to free ports.
func sidecar(engine string) config {
	return func(otlp string) string {
		b, err := os.ReadFile("config/default.yaml")
		if err != nil {
			panic(err)
		}
		if engine == "" {
			engine = "http://" + freeAddr() // nobody listens: the idle case
		}
		repl := strings.NewReplacer(
			"${env:SERVESCOPE_VLLM_ENDPOINT:-http://localhost:8000}", engine,
			"collection_interval: 10s", "collection_interval: 1s",
			"${env:SERVESCOPE_OTLP_GRPC_ENDPOINT:-localhost:4317}", freeAddr(),
			"${env:SERVESCOPE_OTLP_HTTP_ENDPOINT:-localhost:4318}", otlp,
			"${env:SERVESCOPE_PROMETHEUS_ENDPOINT:-0.0.0.0:9464}", freeAddr(),
			"${env:SERVESCOPE_HEALTH_ENDPOINT:-localhost:13133}", freeAddr(),
			"verbosity: basic", "verbosity: basic\n    sampling_initial: 1\n    sampling_thereafter: 1000",
		)
		return repl.Replace(string(b))
	}
}

// sendSpans posts vLLM-shaped request spans (each with a gateway parent) at rate spans per second until stop,
// in batches of 100 every 10 ms at most, and says how many went through.
func sendSpans(otlp string, rate int, stop <-chan struct{}) string {
	batch := 100
	interval := time.Duration(float64(time.Second) * float64(batch) / float64(rate))
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(interval)
	defer tick.Stop()
	client := otlpClient()
	n := uint64(0)
	for {
		select {
		case <-stop:
			wg.Wait()
			return fmt.Sprintf("%d spans accepted, %d refused", sent.Load(), failed.Load())
		case <-tick.C:
			body := spanBatch(&n, batch/2)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if postTraces(client, otlp, body) {
					sent.Add(int64(batch))
				} else {
					failed.Add(int64(batch))
				}
			}()
		}
	}
}

// flood sends 200-span batches from 4 senders back to back until stop, and reports the accepted rate. The
// senders share the machine with the collector, so the figure is a floor for the collector's own maximum.
func flood(otlp string, stop <-chan struct{}) string {
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	client := otlpClient()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := uint64(w) << 40
			for {
				select {
				case <-stop:
					return
				default:
				}
				if postTraces(client, otlp, spanBatch(&n, 100)) {
					sent.Add(200)
				}
			}
		}(w)
	}
	wg.Wait()
	return fmt.Sprintf("%.0f spans/s", float64(sent.Load())/time.Since(start).Seconds())
}

// otlpClient sends as an OTLP/HTTP exporter does: over kept-alive connections, enough of them idle for the
// batches in flight at once. With the default client's two idle connections, and response bodies left
// unread, every batch opened a new connection, and both collectors paid an accept and a fresh goroutine
// (whose stack grows again on the way down the pipeline) per batch, which no exporter makes them pay.
func otlpClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 16
	return &http.Client{Timeout: 5 * time.Second, Transport: transport}
}

// postTraces posts one OTLP/HTTP traces request and says whether it was accepted. It reads the response to
// its end, as the stock exporter does, so that the connection goes back to the pool.
func postTraces(client *http.Client, otlp string, body []byte) bool {
	resp, err := client.Post("http://"+otlp+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

func spanBatch(n *uint64, requests int) []byte {
	td := ptrace.NewTraces()
	now := time.Now()
	gw := td.ResourceSpans().AppendEmpty()
	gw.Resource().Attributes().PutStr("service.name", "gateway")
	gws := gw.ScopeSpans().AppendEmpty().Spans()
	eng := td.ResourceSpans().AppendEmpty()
	eng.Resource().Attributes().PutStr("service.name", "vllm")
	eng.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, "10.0.0.7:8000")
	engs := eng.ScopeSpans().AppendEmpty().Spans()
	for i := 0; i < requests; i++ {
		*n++
		var tid [16]byte
		var gid, eid [8]byte
		binary.BigEndian.PutUint64(tid[8:], *n)
		binary.BigEndian.PutUint64(gid[:], 2**n)
		binary.BigEndian.PutUint64(eid[:], 2**n+1)
		queue := 0.01 + float64(*n%13)*0.2
		e2e := queue + 0.1 + 1.98 + 0.01
		g := gws.AppendEmpty()
		g.SetName("POST /v1/completions")
		g.SetTraceID(tid)
		g.SetSpanID(gid)
		g.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Duration(e2e * float64(time.Second)))))
		g.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		g.Attributes().PutStr("tenant.id", fmt.Sprintf("tenant-%d", *n%50))
		g.Attributes().PutStr(schema.AttrGenAIRequestID, fmt.Sprintf("cmpl-%d", *n))
		s := engs.AppendEmpty()
		s.SetName("llm_request")
		s.SetTraceID(tid)
		s.SetSpanID(eid)
		s.SetParentSpanID(gid)
		s.SetStartTimestamp(g.StartTimestamp())
		s.SetEndTimestamp(g.EndTimestamp())
		a := s.Attributes()
		a.PutDouble(schema.AttrGenAILatencyTimeInQueue, queue)
		a.PutDouble(schema.AttrGenAILatencyTimeInModelPrefill, 0.1)
		a.PutDouble(schema.AttrGenAILatencyTimeInModelDecode, 1.98)
		a.PutDouble(schema.AttrGenAILatencyTimeToFirstToken, queue+0.105)
		a.PutDouble(schema.AttrGenAILatencyE2e, e2e)
		a.PutInt(schema.AttrGenAIUsagePromptTokens, 500)
		a.PutInt(schema.AttrGenAIUsageCompletionTokens, 100)
		a.PutStr(schema.AttrGenAIRequestID, fmt.Sprintf("cmpl-%d", *n))
	}
	body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return body
}
