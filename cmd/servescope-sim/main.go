// Command servescope-sim runs a simulated fleet of LLM inference replicas: each serves its engine's metrics
// endpoints and its node's dcgm-exporter endpoint on loopback, sends request spans over OTLP/HTTP, and
// writes the ground truth of every request (what slowed it down) to a JSONL file. See README.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/fleetsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "servescope-sim:", err)
		os.Exit(1)
	}
}

// startup is the one JSON line written to stdout once the endpoints listen: what a harness needs to point a
// collector at the fleet and to read the ground truth.
type startup struct {
	Scenario      string              `json:"scenario"`
	Description   string              `json:"description"`
	Seed          uint64              `json:"seed"`
	DurationS     float64             `json:"duration_s"`
	Speed         float64             `json:"speed"`
	EpochUnixNano int64               `json:"epoch_unix_nano"`
	FaultStartS   float64             `json:"fault_start_s"`
	FaultEndS     float64             `json:"fault_end_s"`
	SLO           fleetsim.SLO        `json:"slo"`
	GroundTruth   string              `json:"ground_truth,omitempty"`
	OTLPEndpoint  string              `json:"otlp_endpoint,omitempty"`
	Replicas      []fleetsim.Endpoint `json:"replicas"`
}

type options struct {
	seed                     uint64
	scenario                 string
	replicas                 int
	engines                  string
	tp                       int
	duration, drain          time.Duration
	linger                   time.Duration
	speed                    float64
	otlp                     string
	host                     string
	basePort                 int
	groundTruth              string
	ncclDir                  string
	sloTTFT, sloTPOT, sloE2E float64
	status                   time.Duration
	list                     bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	def := fleetsim.DefaultConfig()
	var o options
	fs := flag.NewFlagSet("servescope-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Uint64Var(&o.seed, "seed", 1, "random seed; the same seed and flags give the same run")
	fs.StringVar(&o.scenario, "scenario", "baseline", "scenario to run (see -list-scenarios)")
	fs.IntVar(&o.replicas, "replicas", len(def.Engines), "number of replicas")
	fs.StringVar(&o.engines, "engines", "vllm", "comma-separated engines, repeated over the replicas: vllm, sglang, trtllm, llamacpp")
	fs.IntVar(&o.tp, "tp", 1, "tensor-parallel size (GPUs) of each replica; tp_imbalance raises it to 2")
	fs.DurationVar(&o.duration, "duration", def.Duration, "how long requests arrive (simulated time)")
	fs.DurationVar(&o.drain, "drain", def.Drain, "after -duration, how long running requests may take to finish")
	fs.DurationVar(&o.linger, "linger", 0, "keep serving the final state this long after the run (wall time)")
	fs.Float64Var(&o.speed, "speed", 1, "simulated seconds per wall second: 1 is real time, 0 as fast as possible")
	fs.StringVar(&o.otlp, "otlp-endpoint", "", "OTLP/HTTP endpoint for request spans (http://127.0.0.1:4318), or one per replica, comma-separated (each replica's requests to its own); empty sends none")
	fs.StringVar(&o.host, "listen-host", "127.0.0.1", "address the endpoints listen on")
	fs.IntVar(&o.basePort, "base-port", 0, "replica i serves its engine on base+2i and dcgm-exporter on base+2i+1; 0 picks free ports")
	fs.StringVar(&o.groundTruth, "ground-truth", "", "write one JSON record per finished request to this file")
	fs.StringVar(&o.ncclDir, "nccl-dir", "", "replicas with tensor parallelism write NCCL Inspector records here, one <node>-pid<pid>.log per rank")
	fs.Float64Var(&o.sloTTFT, "slo-ttft", def.SLO.TTFT, "a request is slow above this time to first token (s)")
	fs.Float64Var(&o.sloTPOT, "slo-tpot", def.SLO.TPOT, "… or above this time per output token (s)")
	fs.Float64Var(&o.sloE2E, "slo-e2e", def.SLO.E2E, "… or above this end-to-end latency (s)")
	fs.DurationVar(&o.status, "status-every", 10*time.Second, "print per-replica state to stderr this often (wall time); 0 never")
	fs.BoolVar(&o.list, "list-scenarios", false, "print the scenarios and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func buildConfig(o options) (fleetsim.Config, error) {
	cfg := fleetsim.DefaultConfig()
	sc, err := fleetsim.LookupScenario(o.scenario)
	if err != nil {
		return cfg, err
	}
	cfg.Scenario = sc
	cfg.Seed = o.seed
	cfg.Engines, err = fleetsim.ParseEngines(strings.Split(o.engines, ","), o.replicas)
	if err != nil {
		return cfg, err
	}
	cfg.TP = o.tp
	cfg.Duration, cfg.Drain = o.duration, o.drain
	cfg.NCCLDir = o.ncclDir
	cfg.SLO = fleetsim.SLO{TTFT: o.sloTTFT, TPOT: o.sloTPOT, E2E: o.sloE2E}
	if n := len(otlpEndpoints(o.otlp)); n > 1 && n != len(cfg.Engines) {
		return cfg, fmt.Errorf("-otlp-endpoint: %d endpoints for %d replicas (give one, or one per replica)", n, len(cfg.Engines))
	}
	return cfg, nil
}

// otlpEndpoints splits -otlp-endpoint: none, one for the whole fleet, or one per replica in order.
func otlpEndpoints(flag string) []string {
	var out []string
	for _, e := range strings.Split(flag, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.list {
		for _, name := range fleetsim.ScenarioNames() {
			sc, _ := fleetsim.LookupScenario(name)
			fmt.Fprintf(stdout, "%-22s %-18s %s\n", name, sc.Cause, sc.Description)
		}
		return nil
	}
	cfg, err := buildConfig(o)
	if err != nil {
		return err
	}
	f, err := fleetsim.New(cfg)
	if err != nil {
		return err
	}
	eps, err := f.Serve(o.host, o.basePort)
	if err != nil {
		return err
	}
	defer func() {
		// Close also writes the NCCL Inspector records of the last second and reports a failed write.
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	var truth *bufio.Writer
	if o.groundTruth != "" {
		file, err := os.Create(o.groundTruth)
		if err != nil {
			return err
		}
		defer file.Close()
		truth = bufio.NewWriter(file)
		defer truth.Flush()
		enc := json.NewEncoder(truth)
		f.OnTruth(func(tr fleetsim.Truth) { enc.Encode(tr) }) //nolint:errcheck // a full disk shows at Flush
	}

	cfg = f.Config()
	line, err := json.Marshal(startup{
		Scenario: cfg.Scenario.Name, Description: cfg.Scenario.Description, Seed: cfg.Seed,
		DurationS: cfg.Duration.Seconds(), Speed: o.speed, EpochUnixNano: f.Epoch().UnixNano(),
		FaultStartS: cfg.Scenario.Start * cfg.Duration.Seconds(), FaultEndS: cfg.Scenario.End * cfg.Duration.Seconds(),
		SLO: cfg.SLO, GroundTruth: o.groundTruth, OTLPEndpoint: o.otlp, Replicas: eps,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", line)
	if fl, ok := stdout.(interface{ Sync() error }); ok {
		fl.Sync() //nolint:errcheck // a pipe cannot sync
	}

	exp := newSpanShipper(otlpEndpoints(o.otlp), stderr)
	var mu sync.Mutex
	lastStatus, lastShip := time.Now(), time.Time{}
	tick := func() {
		mu.Lock()
		defer mu.Unlock()
		// Ship a few times a second rather than every 20 ms tick: fewer, larger OTLP requests.
		if time.Since(lastShip) >= 250*time.Millisecond {
			lastShip = time.Now()
			exp.ship(f)
		}
		if truth != nil {
			truth.Flush() //nolint:errcheck // reported at the final Flush
		}
		if o.status > 0 && time.Since(lastStatus) >= o.status {
			lastStatus = time.Now()
			printStatus(stderr, f)
		}
	}
	runErr := f.RunRealtime(ctx, o.speed, tick)
	exp.ship(f)
	exp.close(5 * time.Second)
	printSummary(stderr, f)
	if truth != nil {
		if err := truth.Flush(); err != nil {
			return fmt.Errorf("ground truth: %w", err)
		}
	}
	if errors.Is(runErr, context.Canceled) {
		return nil // SIGINT/SIGTERM: a clean stop
	}
	if o.linger > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(o.linger):
		}
	}
	return runErr
}

func printStatus(w io.Writer, f *fleetsim.Fleet) {
	fmt.Fprintf(w, "t=%5.1fs", f.Now())
	for _, s := range f.State() {
		fmt.Fprintf(w, "  %s waiting=%d running=%d kv=%.0f%% clock=%.0f%%", s.Name, s.Waiting, s.Running, s.KVUsage*100, s.SMClock*100)
	}
	fmt.Fprintln(w)
}

func printSummary(w io.Writer, f *fleetsim.Fleet) {
	truth := f.GroundTruth()
	causes := map[string]int{}
	slow := 0
	for _, tr := range truth {
		if tr.Slow {
			slow++
			causes[tr.Cause]++
		}
	}
	fmt.Fprintf(w, "finished %d requests in %.1f simulated seconds; %d slow", len(truth), f.Now(), slow)
	for _, c := range fleetsim.CauseNames() {
		if n := causes[c]; n > 0 {
			fmt.Fprintf(w, ", %s %d", c, n)
		}
	}
	if n := f.Outstanding(); n > 0 {
		fmt.Fprintf(w, "; %d still running at the end (no record)", n)
	}
	fmt.Fprintln(w)
}

// spanShipper sends traces from goroutines of its own, so that a slow collector never holds the simulation
// back; when one falls behind, its batches are dropped and counted. With one endpoint every replica's spans
// go there; with one per replica, each replica's requests (their whole traces) go to its own, one lane each,
// so a slow collector holds back only its replica's spans.
type spanShipper struct {
	lanes  []*shipLane
	stderr io.Writer
}

type shipLane struct {
	endpoint string
	exp      *fleetsim.OTLPExporter
	queue    chan ptrace.Traces
	done     chan struct{}
	dropped  int
}

func newSpanShipper(endpoints []string, stderr io.Writer) *spanShipper {
	s := &spanShipper{stderr: stderr}
	for _, endpoint := range endpoints {
		l := &shipLane{endpoint: endpoint, exp: fleetsim.NewOTLPExporter(endpoint), queue: make(chan ptrace.Traces, 64), done: make(chan struct{})}
		s.lanes = append(s.lanes, l)
		go func() {
			defer close(l.done)
			warned := false
			for td := range l.queue {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := l.exp.Export(ctx, td); err != nil && !warned {
					fmt.Fprintln(stderr, "servescope-sim: span export failed (further failures are not reported):", err)
					warned = true
				}
				cancel()
			}
		}()
	}
	return s
}

// ship takes the spans of the requests finished since the last call and queues them for their endpoints.
func (s *spanShipper) ship(f *fleetsim.Fleet) {
	switch len(s.lanes) {
	case 0:
		return
	case 1:
		s.lanes[0].ship(f.TakeTraces())
	default:
		for i, td := range f.TakeTracesByReplica() {
			s.lanes[i].ship(td)
		}
	}
}

func (l *shipLane) ship(td ptrace.Traces) {
	if td.SpanCount() == 0 {
		return
	}
	select {
	case l.queue <- td:
	default:
		l.dropped++
	}
}

func (s *spanShipper) close(wait time.Duration) {
	for _, l := range s.lanes {
		close(l.queue)
	}
	deadline := time.Now().Add(wait)
	for _, l := range s.lanes {
		timer := time.NewTimer(max(time.Until(deadline), 0))
		select {
		case <-l.done:
		case <-timer.C:
			select {
			case <-l.done:
			default:
				fmt.Fprintln(s.stderr, "servescope-sim: gave up waiting for the last span exports to", l.endpoint)
			}
		}
		timer.Stop()
		if l.dropped > 0 {
			fmt.Fprintf(s.stderr, "servescope-sim: dropped %d span batches %s could not take\n", l.dropped, l.endpoint)
		}
	}
}
