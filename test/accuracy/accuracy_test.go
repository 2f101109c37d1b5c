// Package accuracy measures how often llm_root_cause names the cause the fleet simulator measured, scenario
// by scenario. The simulator runs in virtual time; every second its replicas' expositions go through the
// same conversion the engine receivers use and through llm_normalize, its dcgm-exporter pages too, the NCCL
// Inspector files of tensor-parallel ranks are read as the nccl receiver reads them, and the request spans
// it emitted go into the connector: the real code path minus HTTP, so a run takes a second.
//
// Every run feeds two connectors the same data: one told the simulator's SLOs, one with no SLO at all (the
// embedded default configuration), and every case runs with the seed the rules are tuned on and with a
// held-out seed nobody tunes on. docs/accuracy.md explains the modes, the cases and the table.
package accuracy

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"

	"github.com/servescope/servescope/connector/llmrootcauseconnector"
	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/processor/llmnormalizeprocessor"
	"github.com/servescope/servescope/receiver/ncclreceiver"
)

// mode is how the connector under test is configured.
type mode int

const (
	// withSLO tells the connector the simulator's SLOs, so both judge slowness by the same limits.
	withSLO mode = iota
	// withoutSLO is the embedded default configuration: the connector decides on its own what is slow.
	withoutSLO
	numModes
)

func (m mode) String() string { return [...]string{"SLO", "no-SLO"}[m] }

// Seeds. The rules are tuned against the simulator's default seed; the held-out seed is for reporting only,
// so that a rule fitted to one seed's particular requests shows up as a gap between the two columns. Do not
// tune against it: when it stops being held out, pick another and say so in docs/accuracy.md.
var (
	tuningSeed  = fleetsim.DefaultConfig().Seed
	heldOutSeed = uint64(20261126)
)

// A case is one run of the simulator: a scenario, optionally held longer than its default minute.
type accuracyCase struct {
	name     string
	scenario string
	// duration, when set, replaces the default minute of arrivals.
	duration time.Duration
	// faultFrom, when set, moves the fault to start at this time and last to the end of the arrivals.
	faultFrom time.Duration
}

// longCases outlast every window the connector keeps: its baselines (baseline.window, 10 min by default)
// and its replica state (state_window, 15 min), so the fault has filled both by the time it ends.
var longCases = []accuracyCase{
	// Replica 0's GPUs throttled for 30 minutes after a healthy 5-minute warm-up.
	{name: "gpu_throttling_30m", scenario: "gpu_throttling", duration: 35 * time.Minute, faultFrom: 5 * time.Minute},
	// The template change after a healthy 5-minute warm-up, for 3 minutes: the minute-long scenario changes
	// acme-agent's template after its third request or so, too few for the connector to know that the
	// family is usually cached (rules.min_cache_samples); here it has its history, as a deployed family has.
	{name: "prompt_family_change_warm", scenario: "prompt_family_change", duration: 8 * time.Minute, faultFrom: 5 * time.Minute},
	// Nothing injected for an hour: what a healthy fleet looks like to the connector.
	{name: "healthy_hour", scenario: "baseline", duration: time.Hour},
}

// healthyCase is the case whose share of requests judged slow without SLOs the issue bounds.
const healthyCase = "healthy_hour"

// floorsSLO are the least share of the simulator's slow requests whose cause must match, with the
// simulator's SLOs on the connector, on either seed: docs/accuracy.md records the measured figures they sit
// under. Raise them as the rules improve.
var floorsSLO = map[string]float64{
	"baseline":             0.65,
	"traffic_spike":        0.88,
	"noisy_tenant":         0.90,
	"prompt_family_change": 0.68,
	"kv_pressure":          0.75,
	"gpu_throttling":       0.85,
	"tp_imbalance":         0.85, // 88-92% since the ranks' Inspector files are read here (3-7% without them: collective_wait is never guessed)
	// 95-96% since a GPU's peak clock is kept past the window (37% before: the throttled clock became the peak).
	"gpu_throttling_30m":        0.92,
	"prompt_family_change_warm": 0.85,
	"healthy_hour":              0.92,
}

// floorsNoSLO are the same floors without SLOs. They are 0 while the slow test moves from the rolling p95
// to an expected pace; the targets (see checkTargets) are printed, met or not, until they become
// floors here.
var floorsNoSLO = map[string]float64{
	// Under the lower of the two seeds' figures measured with the expected pace (docs/accuracy.md); issue
	// 16's targets (printed by the test) are above most of them.
	"baseline":                  0.08,
	"traffic_spike":             0.87,
	"noisy_tenant":              0.90,
	"prompt_family_change":      0.48,
	"kv_pressure":               0.58,
	"gpu_throttling":            0.65,
	"tp_imbalance":              0.70,
	"gpu_throttling_30m":        0.75,
	"prompt_family_change_warm": 0.65,
	"healthy_hour":              0.02, // its slow requests are long answers, not slow without an SLO (docs/accuracy.md)
}

// The targets for the no-SLO mode.
const (
	targetCauseMatch = 0.85 // per scenario whose fault has a cause
	targetBelowSLO   = 0.05 // at most this far under the same scenario's SLO figure
	targetHealthy    = 0.01 // share of a healthy hour's requests judged slow
)

// tally counts one mode's verdicts against the ground truth.
type tally struct {
	requests   int
	periods    []periodTally // long cases only: by when the request arrived
	slow, fast int           // by the simulator
	slowAgree  int           // requests both call slow, or both not
	caught     int           // simulator's slow requests we judged slow
	falseSlow  int           // simulator's fast requests we judged slow
	match      int           // simulator's slow requests whose cause we named
	// longAnswers are the simulator's slow requests whose cause is long_generation, and longMatch those
	// we named so: see causeMatchBeyondLongAnswers.
	longAnswers, longMatch int
	// duringFault and duringFaultMatch count, beyond long answers, the simulator's slow requests that arrived
	// while the scenario's fault was on, and those whose cause we named.
	duringFault, duringFaultMatch int
	confusion                     map[[2]string]int
}

func (t tally) causeMatch() float64 { return share(t.match, t.slow) }

// causeMatchBeyondLongAnswers leaves out the requests the simulator calls slow for a long answer alone. Its
// e2e SLO (40 s) makes a long generation at the usual pace slow; without an SLO, llm_root_cause judges a
// request against what it should have taken, and a long answer at the usual pace took what it should: not
// slow, by decision (docs/accuracy.md). With an e2e SLO set, those requests are slow and long_generation
// names them.
func (t tally) causeMatchBeyondLongAnswers() float64 {
	return share(t.match-t.longMatch, t.slow-t.longAnswers)
}
func (t tally) recall() float64 { return share(t.caught, t.slow) }
func (t tally) falseSlowShare() float64 {
	return share(t.falseSlow, t.fast)
}
func (t tally) judgedSlowShare() float64 { return share(t.caught+t.falseSlow, t.requests) }

// periodTally is one stretch of a long case's arrivals.
type periodTally struct{ requests, slow, match, judgedSlow int }

// period is the length of those stretches.
const period = 5 * time.Minute

// showMatches says whether SERVESCOPE_ACCURACY_SHOW's truth>ours pattern covers this pair.
func showMatches(pattern, truth, ours string) bool {
	want, got, ok := strings.Cut(pattern, ">")
	if !ok {
		return false
	}
	if want == "*" || got == "*" { // a star matches only mismatches
		return truth != ours && (want == "*" || want == truth) && (got == "*" || got == ours)
	}
	return want == truth && got == ours
}

func share(n, of int) float64 { return float64(n) / float64(max(1, of)) }

type result struct {
	c        accuracyCase
	seed     uint64
	hasCause bool // the scenario injects a fault with a cause
	modes    [numModes]tally
}

func TestRootCauseAccuracy(t *testing.T) {
	names := fleetsim.ScenarioNames()
	sort.Strings(names)
	var cases []accuracyCase
	for _, name := range names {
		cases = append(cases, accuracyCase{name: name, scenario: name})
	}
	// The long ones first: parallel runs start in order, and the short ones fill in around them.
	all := append(append([]accuracyCase(nil), longCases...), cases...)
	type key struct {
		name string
		seed uint64
	}
	var mu sync.Mutex
	results := map[key]result{}
	started := time.Now()
	t.Run("runs", func(t *testing.T) {
		for _, c := range all {
			for _, seed := range []uint64{tuningSeed, heldOutSeed} {
				t.Run(fmt.Sprintf("%s/seed=%d", c.name, seed), func(t *testing.T) {
					if c.duration > 0 && (testing.Short() || raceEnabled) {
						// An hour of scrapes every second takes half a minute without the race detector, several
						// with it; docs/accuracy.md gives the command that runs them.
						t.Skipf("%s simulates %s: run without -short and without -race to measure it", c.name, c.duration)
					}
					t.Parallel()
					res := run(t, c, seed)
					mu.Lock()
					results[key{c.name, seed}] = res
					mu.Unlock()
					for m := range numModes {
						tl := res.modes[m]
						t.Logf("%s: %d requests, %d slow; slow judged alike for %d; judged slow %d of %d slow and %d of %d fast; cause matches for %d of %d slow (%.0f%%); while the fault was on, beyond long answers, for %d of %d",
							m, tl.requests, tl.slow, tl.slowAgree, tl.caught, tl.slow, tl.falseSlow, tl.fast, tl.match, tl.slow, 100*tl.causeMatch(), tl.duringFaultMatch, tl.duringFault)
					}
					checkFloors(t, res)
				})
			}
		}
	})
	t.Logf("%d runs (%d skipped) in %s", len(results), 2*len(all)-len(results), time.Since(started).Round(100*time.Millisecond))

	var ordered []result
	for _, c := range append(cases, longCases...) {
		for _, seed := range []uint64{tuningSeed, heldOutSeed} {
			if r, ok := results[key{c.name, seed}]; ok {
				ordered = append(ordered, r)
			}
		}
	}
	md := report(ordered)
	t.Log("\n" + md)
	if path := os.Getenv("SERVESCOPE_ACCURACY_REPORT"); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(md), 0o644))
	}
}

func checkFloors(t *testing.T, res result) {
	for m, floors := range map[mode]map[string]float64{withSLO: floorsSLO, withoutSLO: floorsNoSLO} {
		floor, ok := floors[res.c.name]
		require.True(t, ok, "no %s accuracy floor for %s: add one", m, res.c.name)
		tl := res.modes[m]
		require.GreaterOrEqual(t, tl.causeMatch(), floor, "%s cause match fell under the floor; confusion (truth -> ours): %v", m, top(tl.confusion))
	}
	slo := res.modes[withSLO]
	require.Equal(t, slo.requests, slo.slowAgree, "with the simulator's SLOs, slow or not is decided from the same limits: it must agree for every request")
}

// verdict is what the connector wrote on one request's span.
type verdict struct {
	slow     bool
	cause    string
	evidence string // only kept when SERVESCOPE_ACCURACY_SHOW asks for it
	numbers  string // the llm.evidence.* numbers, likewise
	family   any
}

// pipeline is llm_normalize -> llm_root_cause (metrics in), spans in, verdicts out.
type pipeline struct {
	normalize processor.Metrics
	spansIn   connector.Traces
	stateIn   connector.Metrics
	verdicts  map[string]verdict
	// explanations counts the spans explained per trace (one request each): a request is one explained
	// span, however many spans its engine writes (SGLang's thread spans, one per rank, and their slices).
	explanations map[pcommon.TraceID]int
}

func newPipeline(t *testing.T, m mode, slo fleetsim.SLO) *pipeline {
	ctx := context.Background()
	p := &pipeline{verdicts: map[string]verdict{}, explanations: map[pcommon.TraceID]int{}}
	keepEvidence := os.Getenv("SERVESCOPE_ACCURACY_SHOW") != ""
	explained, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		eachSpan(td, func(s ptrace.Span) {
			a := s.Attributes()
			id, ok := a.Get(schema.AttrGenAIRequestID)
			cause, explainedHere := a.Get(schema.AttrLLMRootCause)
			if explainedHere {
				p.explanations[s.TraceID()]++
			}
			if !ok || !explainedHere {
				return
			}
			slow, _ := a.Get(schema.AttrLLMSlow)
			v := verdict{slow: slow.Bool(), cause: cause.Str()}
			if keepEvidence {
				ev, _ := a.Get(schema.AttrLLMRootCauseEvidence)
				fam, _ := a.Get(schema.AttrLLMPromptFamily)
				v.evidence, v.family = ev.Str(), fam.AsRaw()
				var numbers []string
				a.Range(func(k string, val pcommon.Value) bool {
					if strings.HasPrefix(k, "llm.evidence.") && val.Type() == pcommon.ValueTypeDouble {
						numbers = append(numbers, fmt.Sprintf("%s=%.3g", strings.TrimPrefix(k, "llm.evidence."), val.Double()))
					}
					return true
				})
				sort.Strings(numbers)
				v.numbers = strings.Join(numbers, " ")
			}
			p.verdicts[id.Str()] = v
		})
		return nil
	})
	require.NoError(t, err)
	rcCfg := llmrootcauseconnector.NewFactory().CreateDefaultConfig().(*llmrootcauseconnector.Config)
	rcCfg.MaxWait = 0 // each second's state goes in before the spans that ended in it
	if m == withSLO {
		rcCfg.SLO.Default = llmrootcauseconnector.Limits{TTFT: seconds(slo.TTFT), TPOT: seconds(slo.TPOT), E2E: seconds(slo.E2E)}
	}
	rf := llmrootcauseconnector.NewFactory()
	set := connectortest.NewNopSettings(rf.Type())
	p.spansIn, err = rf.CreateTracesToTraces(ctx, set, rcCfg, explained)
	require.NoError(t, err)
	p.stateIn, err = rf.CreateMetricsToMetrics(ctx, set, rcCfg, consumertest.NewNop())
	require.NoError(t, err)
	nf := llmnormalizeprocessor.NewFactory()
	p.normalize, err = nf.CreateMetrics(ctx, processortest.NewNopSettings(nf.Type()), nf.CreateDefaultConfig(), p.stateIn)
	require.NoError(t, err)
	for _, c := range []component.Component{p.spansIn, p.stateIn, p.normalize} {
		require.NoError(t, c.Start(ctx, componenttest.NewNopHost()))
	}
	return p
}

// shutdown sends on what still waits, so every span has its verdict once it returns.
func (p *pipeline) shutdown(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, p.normalize.Shutdown(ctx))
	require.NoError(t, p.spansIn.Shutdown(ctx))
	require.NoError(t, p.stateIn.Shutdown(ctx))
}

func run(t *testing.T, c accuracyCase, seed uint64) result {
	ctx := context.Background()
	cfg := fleetsim.DefaultConfig()
	cfg.Seed = seed
	sc, err := fleetsim.LookupScenario(c.scenario)
	require.NoError(t, err)
	if c.duration > 0 {
		cfg.Duration = c.duration
	}
	if c.faultFrom > 0 {
		// Scenario times are fractions of the duration: the fault runs from faultFrom to the last arrival.
		sc.Start, sc.End = c.faultFrom.Seconds()/cfg.Duration.Seconds(), 1
	}
	cfg.Scenario = sc
	cfg.Engines = []string{fleetsim.EngineVLLM, fleetsim.EngineSGLang, fleetsim.EngineVLLM, fleetsim.EngineSGLang}
	cfg.Epoch = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	cfg.NCCLDir = t.TempDir() // only replicas with tensor parallelism write there
	fleet, err := fleetsim.New(cfg)
	require.NoError(t, err)

	var pipes [numModes]*pipeline
	for m := range numModes {
		pipes[m] = newPipeline(t, m, cfg.SLO)
	}
	// Both connectors get the same data; each pipeline may change what it is given, so each gets its own copy.
	feedMetrics := func(md pmetric.Metrics) {
		for m, p := range pipes {
			in := md
			if m < len(pipes)-1 {
				in = pmetric.NewMetrics()
				md.CopyTo(in)
			}
			require.NoError(t, p.normalize.ConsumeMetrics(ctx, in))
		}
	}
	feedTraces := func(td ptrace.Traces) {
		for m, p := range pipes {
			in := td
			if m < len(pipes)-1 {
				in = ptrace.NewTraces()
				td.CopyTo(in)
			}
			require.NoError(t, p.spansIn.ConsumeTraces(ctx, in))
		}
	}

	states := fleet.State()
	nccl := ncclReader(t, fleet.Config(), states)
	end := cfg.Duration + cfg.Drain
	for at := time.Second; at <= end+time.Second; at += time.Second {
		fleet.Advance(at.Seconds())
		wall := cfg.Epoch.Add(at)
		for i, st := range states {
			engine := enginescrape.ExpositionToMetrics(fleet.RenderMetrics(i), wall)
			stamp(engine, st.Instance, st.Engine)
			feedMetrics(engine)
			// dcgm-exporter on the replica's node, scraped with the replica named on it (the resource processor's job).
			gpus := enginescrape.ExpositionToMetrics(fleet.RenderDCGM(i), wall)
			stamp(gpus, st.Instance, "")
			feedMetrics(gpus)
		}
		if nccl != nil {
			// What the ranks' Inspector files gained this second, read as the nccl receiver reads them; a
			// second's records must fit one interval's budget, or the timings would lag the spans.
			md, caughtUp := nccl.Read(wall)
			require.True(t, caughtUp, "the Inspector files outgrew one interval's read budget at %s", at)
			if md.DataPointCount() > 0 {
				feedMetrics(md)
			}
		}
		feedTraces(fleet.TakeTraces())
	}
	for _, p := range pipes {
		p.shutdown(t)
	}

	res := result{c: c, seed: seed, hasCause: sc.Cause != fleetsim.CauseNone}
	show := os.Getenv("SERVESCOPE_ACCURACY_SHOW")
	for m, p := range pipes {
		tl := tally{confusion: map[[2]string]int{}}
		if c.duration > 0 {
			tl.periods = make([]periodTally, int((cfg.Duration+period-1)/period)) // arrivals stop at Duration
		}
		for _, truth := range fleet.GroundTruth() {
			got, ok := p.verdicts[truth.RequestID]
			require.True(t, ok, "%s: request %s was not explained", mode(m), truth.RequestID)
			var traceID pcommon.TraceID
			_, err := hex.Decode(traceID[:], []byte(truth.TraceID))
			require.NoError(t, err)
			require.Equal(t, 1, p.explanations[traceID], "%s: request %s (%s) explained more than once", mode(m), truth.RequestID, truth.Engine)
			tl.requests++
			if tl.periods != nil {
				pt := &tl.periods[min(len(tl.periods)-1, int(truth.ArrivalS/period.Seconds()))]
				pt.requests++
				if got.slow {
					pt.judgedSlow++
				}
				if truth.Slow {
					pt.slow++
					if got.cause == truth.Cause {
						pt.match++
					}
				}
			}
			if got.slow == truth.Slow {
				tl.slowAgree++
			}
			// SERVESCOPE_ACCURACY_SHOW=truth>ours (e.g. prefix_cache_miss>long_prompt, or none>unknown for fast
			// requests judged slow) logs those requests' evidence; a * on either side stands for any cause other
			// than the one on the other side (gpu_throttling>* shows its misses, *>* every mismatch).
			if showMatches(show, truth.Cause, got.cause) {
				t.Logf("%s: %s>%s at %.0fs: %s %s %s fam=%v prompt=%d cached=%d ttft=%.3fs tpot=%.1fms: %s [%s]", mode(m), truth.Cause, got.cause, truth.ArrivalS,
					truth.Replica, truth.Engine, truth.Tenant, got.family, truth.PromptTokens, truth.CachedTokens, truth.TTFTS, 1000*truth.TPOTS, got.evidence, got.numbers)
			}
			if !truth.Slow {
				tl.fast++
				if got.slow {
					tl.falseSlow++
				}
				continue
			}
			tl.slow++
			if got.slow {
				tl.caught++
			}
			tl.confusion[[2]string{truth.Cause, got.cause}]++
			if got.cause == truth.Cause {
				tl.match++
			}
			if truth.Cause == "long_generation" {
				tl.longAnswers++
				if got.cause == truth.Cause {
					tl.longMatch++
				}
			} else if truth.FaultActive {
				tl.duringFault++
				if got.cause == truth.Cause {
					tl.duringFaultMatch++
				}
			}
		}
		res.modes[m] = tl
	}
	return res
}

// ncclReader reads the Inspector files of the fleet's tensor-parallel replicas as the nccl receiver does,
// on the simulation's clock: one rule per replica (its files, its instance and layout), every all-reduce
// through NCCL as the simulator models it. nil when no replica writes any.
func ncclReader(t *testing.T, cfg fleetsim.Config, states []fleetsim.ReplicaState) *ncclreceiver.FileReader {
	rcfg := ncclreceiver.NewFactory().CreateDefaultConfig().(*ncclreceiver.Config)
	rcfg.Include = []string{filepath.Join(cfg.NCCLDir, "*.log")}
	rcfg.GPULookup = "none"
	for _, st := range states {
		if st.NCCLFiles == "" {
			continue
		}
		rcfg.Replicas = append(rcfg.Replicas, ncclreceiver.ReplicaRule{
			Files: st.NCCLFiles, ServiceInstanceID: st.Instance, Engine: st.Engine,
			TensorParallelSize: cfg.TP, AllReduce: "nccl",
		})
	}
	if len(rcfg.Replicas) == 0 {
		return nil
	}
	r, err := ncclreceiver.NewFileReader(rcfg, zap.NewNop(), cfg.Epoch)
	require.NoError(t, err)
	return r
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// stamp puts on a scrape what the engine receiver (or, for dcgm-exporter, the resource processor) puts.
func stamp(md pmetric.Metrics, instance, engine string) {
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	res.PutStr(schema.AttrServiceInstanceID, instance)
	if engine != "" {
		res.PutStr(schema.AttrLLMEngineName, engine)
	}
}

func eachSpan(td ptrace.Traces, fn func(ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				fn(ss.At(j).Spans().At(k))
			}
		}
	}
}
