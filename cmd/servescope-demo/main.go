// Command servescope-demo shows servescope explaining an incident in about a minute, on a laptop: it runs
// a simulated fleet (four replicas, vLLM and SGLang, one H100 each) with a scripted fault, the collector
// with config/demo.yaml scraping it and taking its request spans, and prints what the collector concludes:
// the replicas' state, each slow request's breakdown and root cause with its evidence, and incidents with
// recommended actions. It stops after the scenario or on Ctrl-C, and stops the collector with it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/fleetsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "servescope-demo:", err)
		os.Exit(1)
	}
}

type options struct {
	collector, config, scenario string
	duration                    time.Duration
	seed                        uint64
	slowPerSecond               int
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("servescope-demo", flag.ContinueOnError)
	fs.StringVar(&o.collector, "collector", "bin/otelcol-servescope", "the collector binary (make build)")
	fs.StringVar(&o.config, "config", "config/demo.yaml", "the collector configuration")
	fs.StringVar(&o.scenario, "scenario", "traffic_spike", "the fault to inject (servescope-sim -list-scenarios)")
	fs.DurationVar(&o.duration, "duration", 45*time.Second, "how long requests arrive (the fault runs from a third to five sixths of it)")
	fs.Uint64Var(&o.seed, "seed", 1, "simulator seed")
	fs.IntVar(&o.slowPerSecond, "slow-per-second", 2, "at most this many slow requests printed per second (the rest are counted)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	cfg := fleetsim.DefaultConfig()
	sc, err := fleetsim.LookupScenario(o.scenario)
	if err != nil {
		return err
	}
	cfg.Scenario, cfg.Seed, cfg.Duration, cfg.Drain = sc, o.seed, o.duration, 15*time.Second
	cfg.Engines = []string{fleetsim.EngineVLLM, fleetsim.EngineSGLang, fleetsim.EngineVLLM, fleetsim.EngineSGLang}
	fleet, err := fleetsim.New(cfg)
	if err != nil {
		return err
	}
	eps, err := fleet.Serve("127.0.0.1", 0)
	if err != nil {
		return err
	}
	defer fleet.Close()
	truth := map[string]fleetsim.Truth{}
	var truthMu sync.Mutex
	fleet.OnTruth(func(t fleetsim.Truth) { truthMu.Lock(); truth[t.RequestID] = t; truthMu.Unlock() })

	c := newConsole(out, eps, fleet.Epoch(), o.slowPerSecond)
	consoleAddr, err := c.serve()
	if err != nil {
		return err
	}
	defer c.close()
	otlpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	env := []string{"DEMO_CONSOLE=http://" + consoleAddr, "DEMO_OTLP_ENDPOINT=" + otlpAddr}
	for i, ep := range eps {
		env = append(env, fmt.Sprintf("DEMO_ENGINE_%d=%s", i, ep.URL), fmt.Sprintf("DEMO_DCGM_%d=%s", i, strings.TrimPrefix(ep.DCGM, "http://")),
			fmt.Sprintf("DEMO_INSTANCE_%d=%s", i, ep.Instance))
	}
	logPath := filepath.Join(os.TempDir(), "servescope-demo-collector.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	col := exec.Command(o.collector, "--config", o.config)
	col.Env = append(os.Environ(), env...)
	col.Stdout, col.Stderr = logFile, logFile
	if err := col.Start(); err != nil {
		return fmt.Errorf("starting the collector (%s; run make build first): %w", o.collector, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- col.Wait() }()
	defer func() {
		_ = col.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = col.Process.Kill()
			<-exited
		}
	}()

	fmt.Fprintf(out, "servescope demo: %s\n  %s\n  fault from %.0f s to %.0f s; SLOs: TTFT %.1f s, TPOT %.0f ms, e2e %.0f s; collector log: %s\n\n",
		sc.Name, sc.Description, sc.Start*o.duration.Seconds(), sc.End*o.duration.Seconds(), cfg.SLO.TTFT, 1000*cfg.SLO.TPOT, cfg.SLO.E2E, logPath)
	if err := waitForCollector(ctx, otlpAddr, exited); err != nil {
		return err
	}

	exporter := fleetsim.NewOTLPExporter("http://" + otlpAddr)
	ship := func() {
		if td := fleet.TakeTraces(); td.SpanCount() > 0 {
			_ = exporter.Export(context.Background(), td) // a lost batch shows as fewer explained requests
		}
	}
	lastShip := time.Now()
	runErr := fleet.RunRealtime(ctx, 1, func() {
		if time.Since(lastShip) >= 250*time.Millisecond {
			ship()
			lastShip = time.Now()
		}
		c.tick(fleet.Now())
	})
	ship()
	if runErr == nil {
		// the collector's last scrape, the connector's wait for it, and the last flush of metrics and incidents
		select {
		case <-time.After(8 * time.Second):
		case <-ctx.Done():
		}
	}
	truthMu.Lock()
	c.summary(truth)
	truthMu.Unlock()
	return runErr
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitForCollector waits until the collector takes OTLP, failing if it exits first.
func waitForCollector(ctx context.Context, otlpAddr string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("the collector exited at start (%w); see its log", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		req, _ := ptraceotlp.NewExportRequest().MarshalProto()
		resp, err := http.Post("http://"+otlpAddr+"/v1/traces", "application/x-protobuf", strings.NewReader(string(req)))
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("the collector did not open its OTLP port within 30 s; see its log")
}

// ------------------------------------------------------------------------------------------------------
// console: an OTLP/HTTP endpoint for the collector's conclusions, printed for a person.

type replicaView struct {
	name, engine                      string
	waiting, running, kv, gpu, health float64
}

type console struct {
	mu           sync.Mutex
	out          io.Writer
	epoch        time.Time
	srv          *http.Server
	replicas     map[string]*replicaView // by service.instance.id
	order        []string
	perSecond    int
	printedAt    int64 // the second of the last slow line
	printedInSec int
	suppressed   int
	slowByCause  map[string]int
	explained    int
	slow         int
	ours         map[string]string // request id -> our cause, for slow requests
	incidents    []string
	lastTable    float64
}

func newConsole(out io.Writer, eps []fleetsim.Endpoint, epoch time.Time, perSecond int) *console {
	c := &console{out: out, epoch: epoch, replicas: map[string]*replicaView{}, perSecond: perSecond, slowByCause: map[string]int{}, ours: map[string]string{}}
	for _, ep := range eps {
		nan := -1.0
		c.replicas[ep.Instance] = &replicaView{name: ep.Replica, engine: ep.Engine, waiting: nan, running: nan, kv: nan, gpu: nan, health: nan}
		c.order = append(c.order, ep.Instance)
	}
	return c
}

func (c *console) serve() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err == nil {
			c.traces(req)
		}
		resp, _ := ptraceotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(resp)
	})
	mux.HandleFunc("/v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err == nil {
			c.metrics(req)
		}
		resp, _ := pmetricotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(resp)
	})
	mux.HandleFunc("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err == nil {
			c.logs(req)
		}
		resp, _ := plogotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(resp)
	})
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(l) }()
	return l.Addr().String(), nil
}

func (c *console) close() { _ = c.srv.Close() }

func (c *console) since(unixNano int64) float64 {
	return time.Unix(0, unixNano).Sub(c.epoch).Seconds()
}
