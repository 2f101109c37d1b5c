package replay

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/spanfile"
)

// Fleet is a fleet to replay a workload on, in the simulator.
type Fleet struct {
	Replicas int
	Engine   string // vllm, sglang, trtllm, llamacpp
	// MaxNumSeqs and KVBlocks, when positive, replace the engine's batch cap and each replica's KV cache.
	MaxNumSeqs, KVBlocks int
	Router               string // fleetsim.Routers
}

// Calibration is the simulator's engine model fitted to a recording: the share of the GPU's peak FLOPS
// prefill attains and of its memory bandwidth decode attains, found so that the recorded fleet, replayed,
// prefills a computed token and generates one as fast as the recording says it did.
type Calibration struct {
	MFU, HBMEfficiency float64
	// Recorded and Predicted are the two figures matched: the median seconds of prefill per computed prompt
	// token, and the median TPOT.
	RecordedPrefillPerToken, PredictedPrefillPerToken float64
	RecordedTPOT, PredictedTPOT                       float64
	Rounds                                            int
}

// drain is how long a replay lets requests still running at the last arrival finish.
const drain = 10 * time.Minute

// Calibrate fits the engine model to the workload's recorded requests by replaying it on the recorded fleet
// and scaling prefill's and decode's efficiency by how far the replay's medians are from the recording's,
// until both are within 2% (at most eight rounds).
func Calibrate(wl Workload, recorded Fleet) (Calibration, error) {
	recPace, recTPOT := paces(wl, func(r Request) (Latency, int) { return r.Recorded, r.PromptTokens })
	if math.IsNaN(recPace) || math.IsNaN(recTPOT) {
		return Calibration{}, errors.New("the recording has too few requests with a prefill time and an output of more than one token to calibrate on")
	}
	gpu := fleetsim.DefaultConfig().GPU
	cal := Calibration{MFU: gpu.MFU, HBMEfficiency: gpu.HBMEfficiency, RecordedPrefillPerToken: recPace, RecordedTPOT: recTPOT}
	for cal.Rounds = 1; cal.Rounds <= 8; cal.Rounds++ {
		predicted, err := simulate(wl, recorded, cal)
		if err != nil {
			return cal, err
		}
		cal.PredictedPrefillPerToken, cal.PredictedTPOT = paces(wl, func(r Request) (Latency, int) {
			p, ok := predicted[r.ID]
			if !ok {
				return Latency{TTFT: math.NaN(), TPOT: math.NaN(), E2E: math.NaN(), Prefill: math.NaN(), CachedTokens: math.NaN()}, 0
			}
			return Latency{TPOT: p.TPOT, Prefill: p.Prefill, CachedTokens: p.CachedTokens}, int(p.PromptTokens)
		})
		prefillOff, decodeOff := cal.PredictedPrefillPerToken/recPace, cal.PredictedTPOT/recTPOT
		if math.Abs(prefillOff-1) < 0.02 && math.Abs(decodeOff-1) < 0.02 {
			break
		}
		// Prefill is compute-bound and decode bandwidth-bound in the roofline: each scales inversely
		// with its efficiency.
		cal.MFU *= prefillOff
		cal.HBMEfficiency *= decodeOff
	}
	cal.Rounds = min(cal.Rounds, 8)
	return cal, nil
}

// paces are the median prefill seconds per computed prompt token (over requests that computed at least
// 64) and the median TPOT.
func paces(wl Workload, of func(Request) (Latency, int)) (prefillPerToken, tpot float64) {
	var perToken, tpots []float64
	for _, r := range wl {
		l, prompt := of(r)
		computed := float64(prompt)
		if !math.IsNaN(l.CachedTokens) {
			computed -= l.CachedTokens
		}
		if computed >= 64 && l.Prefill > 0 {
			perToken = append(perToken, l.Prefill/computed)
		}
		if r.OutputTokens > 1 && l.TPOT > 0 {
			tpots = append(tpots, l.TPOT)
		}
	}
	return median(perToken), median(tpots)
}

func median(v []float64) float64 {
	if len(v) < 5 {
		return math.NaN()
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// Simulate replays the workload on the fleet with the calibration, in virtual time, and returns the
// requests as the recording's would read (their latencies, tokens and the simulator's measured cause),
// arriving at epoch plus their offsets.
func Simulate(wl Workload, fleet Fleet, cal Calibration, epoch time.Time) ([]spanfile.Request, error) {
	byID, err := simulate(wl, fleet, cal)
	if err != nil {
		return nil, err
	}
	out := make([]spanfile.Request, 0, len(byID))
	for _, r := range wl {
		if p, ok := byID[r.ID]; ok {
			p.Start = epoch.Add(r.At)
			p.End = p.Start.Add(time.Duration(p.E2E * float64(time.Second)))
			out = append(out, p)
		}
	}
	return out, nil
}

func simulate(wl Workload, fleet Fleet, cal Calibration) (map[string]spanfile.Request, error) {
	if len(wl) == 0 {
		return nil, errors.New("no requests to replay")
	}
	if fleet.Replicas < 1 {
		return nil, fmt.Errorf("a fleet needs at least one replica, got %d", fleet.Replicas)
	}
	engines, err := fleetsim.ParseEngines([]string{fleet.Engine}, fleet.Replicas)
	if err != nil {
		return nil, err
	}
	cfg := fleetsim.DefaultConfig()
	cfg.Engines, cfg.Router, cfg.KVBlocks = engines, fleet.Router, fleet.KVBlocks
	if fleet.MaxNumSeqs > 0 {
		cfg.Engine.MaxNumSeqs = fleet.MaxNumSeqs
	}
	cfg.GPU.MFU, cfg.GPU.HBMEfficiency = cal.MFU, cal.HBMEfficiency
	cfg.Duration = wl.Duration() + time.Millisecond
	cfg.Drain = drain
	cfg.Epoch = time.Unix(0, 0)
	for _, r := range wl {
		cfg.Workload = append(cfg.Workload, fleetsim.Arrival{
			AtS: r.At.Seconds(), Tenant: r.Tenant, Family: r.Family,
			PromptTokens: r.PromptTokens, SharedPrefixTokens: r.PrefixTokens, OutputTokens: r.OutputTokens,
		})
	}
	sim, err := fleetsim.New(cfg)
	if err != nil {
		return nil, err
	}
	sim.RunToEnd()
	out := map[string]spanfile.Request{}
	for _, t := range sim.GroundTruth() {
		if t.Given < 1 || t.Given > len(wl) {
			continue
		}
		r := wl[t.Given-1]
		tpot := math.NaN()
		if t.CompletionTokens > 1 {
			tpot = t.TPOTS
		}
		out[r.ID] = spanfile.Request{
			ID: r.ID, Model: r.Model, Tenant: r.Tenant, Family: r.Family, Replica: t.Replica, Engine: t.Engine,
			Slow: t.Slow, Cause: t.Cause,
			Queue: t.QueueS, Prefill: t.PrefillS, Decode: t.DecodeS, Other: math.Max(0, t.E2ES-t.QueueS-t.PrefillS-t.DecodeS),
			TTFT: t.TTFTS, TPOT: tpot, E2E: t.E2ES,
			PromptTokens: float64(t.PromptTokens), GenerationTokens: float64(t.CompletionTokens), CachedTokens: float64(t.CachedTokens),
		}
	}
	return out, nil
}
