package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/servescope/servescope/internal/compare"
	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/replay"
	"github.com/servescope/servescope/internal/spanfile"
)

// runReplay replays a recorded workload on a simulated fleet (calibrated to the recording), sends it to a
// real endpoint, or converts it to and from Dynamo's Mooncake trace format.
func runReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	target := fs.String("target", "", "an OpenAI-compatible server (http://host:port) to send the workload to")
	model := fs.String("model", "", "the model name to ask the target for (default: the recorded one)")
	rateScale := fs.Float64("rate-scale", 1, "send this many times faster (2: the same requests in half the time)")
	maxRequests := fs.Int("max-requests", 1000, "send at most this many requests")
	maxDuration := fs.Duration("max-duration", 10*time.Minute, "send only the requests due within this long")
	maxInFlight := fs.Int("max-in-flight", 256, "at most this many requests open at once; one due beyond it is not sent")
	timeout := fs.Duration("request-timeout", 5*time.Minute, "give up on one request after this long")
	loose := fs.Bool("loose-length", false, "send max_tokens only, not min_tokens/ignore_eos (for servers that refuse them)")
	export := fs.String("export", "", "write the workload in this format (mooncake) to the file given after it")
	importFormat := fs.String("import", "", "read the workload from a trace in this format (mooncake) instead of spans")
	asJSON := fs.Bool("json", false, "write JSON instead of text")
	replicas := fs.Int("replicas", 0, "without --target: replay on this many simulated replicas (default: as many as the recording had)")
	engine := fs.String("engine", "", "without --target: the simulated engine: vllm, sglang, trtllm, llamacpp (default: the recording's)")
	maxNumSeqs := fs.Int("max-num-seqs", 0, "without --target: the engine's batch cap (default 48)")
	kvBlocks := fs.Int("kv-blocks", 0, "without --target: each replica's KV cache in blocks (default: what the model leaves on an H100)")
	router := fs.String("router", "", "without --target: the gateway's balancing: "+strings.Join(fleetsim.Routers, ", "))
	sweep := fs.String("sweep", "", "without --target: replicas=FROM..TO, to find the smallest fleet that meets --slo")
	slo := fs.String("slo", "ttft=1s,tpot=50ms", "with --sweep: the limits at p95 and p99")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "servescope replay: "+format+"\n", a...)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "servescope replay: %v\n", err)
		return 1
	}
	if *rateScale <= 0 {
		return usageErr("--rate-scale must be positive, got %v", *rateScale)
	}
	for _, f := range []string{*export, *importFormat} {
		if f != "" && f != "mooncake" {
			return usageErr("the trace format is mooncake, got %q", f)
		}
	}
	var (
		wl        replay.Workload
		skipped   int
		recording *spanfile.Window // nil for a Mooncake trace
	)
	switch {
	case *importFormat != "":
		if len(positional) != 1 || *model == "" {
			return usageErr("--import mooncake TRACE needs one trace file and --model (a trace does not name it)")
		}
		f, err := os.Open(positional[0])
		if err != nil {
			return fail(err)
		}
		wl, err = replay.ReadMooncake(f, *model)
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("%s: %w", positional[0], err))
		}
	case *export != "":
		if len(positional) != 2 {
			return usageErr("--export mooncake wants FILE and OUT, got %d arguments", len(positional))
		}
		fallthrough
	default:
		if len(positional) < 1 {
			return usageErr("want a FILE of explained spans")
		}
		w, err := load(positional[0])
		if err != nil {
			return fail(err)
		}
		recording = w
		if wl, skipped = replay.FromRequests(w.Requests); len(wl) == 0 {
			return fail(fmt.Errorf("%s: no request carries both its prompt and output length", positional[0]))
		}
	}
	if skipped > 0 {
		fmt.Fprintf(stderr, "servescope replay: %d requests without a prompt or output length left out\n", skipped)
	}
	if *export != "" {
		out, err := os.Create(positional[1])
		if err != nil {
			return fail(err)
		}
		if err := replay.WriteMooncake(out, wl); err != nil {
			out.Close()
			return fail(err)
		}
		if err := out.Close(); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %d requests over %s to %s (Mooncake, %d-token blocks)\n", len(wl), compare.Seconds(wl.Duration().Seconds()), positional[1], replay.MooncakeBlockTokens)
		return 0
	}
	if *target == "" {
		if recording == nil {
			return usageErr("a Mooncake trace has no recorded latencies to calibrate on: give --target URL to send it to a server")
		}
		sim := simulation{
			recording: recording, workload: wl, rateScale: *rateScale,
			fleet: replay.Fleet{Replicas: *replicas, Engine: *engine, MaxNumSeqs: *maxNumSeqs, KVBlocks: *kvBlocks, Router: *router},
		}
		if *sweep != "" {
			from, to, err := parseSweep(*sweep)
			if err != nil {
				return usageErr("--sweep: %v", err)
			}
			limits, err := parseSLO(*slo)
			if err != nil {
				return usageErr("--slo: %v", err)
			}
			return sim.sweep(stdout, stderr, from, to, limits, *asJSON)
		}
		return sim.run(stdout, stderr, *asJSON)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := replay.Target{
		URL: *target, Model: *model, MaxRequests: *maxRequests, MaxDuration: *maxDuration, MaxInFlight: *maxInFlight,
		RequestTimeout: *timeout, ExactLength: !*loose,
	}
	outcome, err := t.Send(ctx, wl.Scaled(*rateScale))
	rep := replay.NewReport(*target, len(wl), outcome)
	if code := write(stdout, stderr, rep, *asJSON); code != 0 {
		return code
	}
	if err != nil {
		return fail(err)
	}
	return 0
}
