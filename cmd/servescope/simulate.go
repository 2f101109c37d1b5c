package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/servescope/servescope/internal/compare"
	"github.com/servescope/servescope/internal/replay"
	"github.com/servescope/servescope/internal/spanfile"
)

// simulation is a replay on a simulated fleet: the recording, its workload, and the fleet to try. Each
// model is a pool of its own, calibrated on its own requests and replayed on its own fleet (the flags
// describe each pool's).
type simulation struct {
	recording *spanfile.Window
	workload  replay.Workload
	fleet     replay.Fleet
	rateScale float64
}

// pool is one model's part of the recording.
type pool struct {
	model    string
	recorded []spanfile.Request
	workload replay.Workload
	// fleet is the fleet it was recorded on (its replicas, their most common engine); target the one to
	// replay on: the flags, the recorded fleet's where they say nothing.
	fleet, target replay.Fleet
	cal           replay.Calibration
}

// pools splits the recording by model, busiest first.
func (s simulation) pools() []*pool {
	byModel := map[string]*pool{}
	var order []*pool
	for _, r := range s.recording.Requests {
		p := byModel[r.Model]
		if p == nil {
			p = &pool{model: r.Model}
			byModel[r.Model] = p
			order = append(order, p)
		}
		p.recorded = append(p.recorded, r)
	}
	for _, r := range s.workload {
		if p := byModel[r.Model]; p != nil {
			p.workload = append(p.workload, r)
		}
	}
	for _, p := range order {
		p.fleet = recordedFleet(p.recorded)
		p.target = s.fleet
		if p.target.Replicas == 0 {
			p.target.Replicas = p.fleet.Replicas
		}
		if p.target.Engine == "" {
			p.target.Engine = p.fleet.Engine
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return len(order[i].workload) > len(order[j].workload) })
	return order
}

// recordedFleet is the fleet requests came from: their replicas and the replicas' most common engine.
func recordedFleet(requests []spanfile.Request) replay.Fleet {
	replicas, engines := map[string]bool{}, map[string]int{}
	for _, r := range requests {
		replicas[r.Replica] = true
		if r.Engine != "" {
			engines[r.Engine]++
		}
	}
	f := replay.Fleet{Replicas: max(1, len(replicas)), Engine: "vllm"}
	best := 0
	for e, n := range engines {
		if n > best || (n == best && e < f.Engine) {
			f.Engine, best = e, n
		}
	}
	return f
}

// calibrate fits each pool's engine model to its recorded requests and says what it found.
func (s simulation) calibrate(stderr io.Writer) ([]*pool, error) {
	pools := s.pools()
	for _, p := range pools {
		cal, err := replay.Calibrate(p.workload, p.fleet)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", p.model, err)
		}
		p.cal = cal
		fmt.Fprintf(stderr, "%s: calibrated on %d requests and %d x %s: prefill %s per 1k computed tokens (recorded %s), TPOT %s (recorded %s); prefill MFU %.2f, decode HBM efficiency %.2f\n",
			p.model, len(p.workload), p.fleet.Replicas, p.fleet.Engine, compare.Seconds(1000*cal.PredictedPrefillPerToken), compare.Seconds(1000*cal.RecordedPrefillPerToken),
			compare.Seconds(cal.PredictedTPOT), compare.Seconds(cal.RecordedTPOT), cal.MFU, cal.HBMEfficiency)
	}
	return pools, nil
}

func (s simulation) run(stdout, stderr io.Writer, asJSON bool) int {
	pools, err := s.calibrate(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "servescope replay: %v\n", err)
		return 1
	}
	epoch := s.recording.Requests[0].Start
	var predicted []spanfile.Request
	var names []string
	for _, p := range pools {
		got, err := replay.Simulate(p.workload.Scaled(s.rateScale), p.target, p.cal, epoch)
		if err != nil {
			fmt.Fprintf(stderr, "servescope replay: model %s: %v\n", p.model, err)
			return 1
		}
		predicted = append(predicted, got...)
		names = append(names, describe(p.target, s.rateScale))
	}
	name := strings.Join(slices.Compact(names), "; ")
	side := &spanfile.Window{Source: spanfile.Source{Path: name}, File: &spanfile.File{Path: name}, Requests: predicted}
	rep := compare.Periods(s.recording, side, compare.ByModel)
	rep.Names = [2]string{"recorded", "predicted"}
	return write(stdout, stderr, rep, asJSON)
}

// describe names a simulated fleet ("simulated 4 x vllm, router round_robin"); with no replicas (a sweep,
// which varies them) it names the engine alone.
func describe(f replay.Fleet, rateScale float64) string {
	parts := []string{f.Engine}
	if f.Replicas > 0 {
		parts[0] = fmt.Sprintf("%d x %s", f.Replicas, f.Engine)
	}
	if f.Router != "" {
		parts = append(parts, "router "+f.Router)
	}
	if f.MaxNumSeqs > 0 {
		parts = append(parts, fmt.Sprintf("max-num-seqs %d", f.MaxNumSeqs))
	}
	if f.KVBlocks > 0 {
		parts = append(parts, fmt.Sprintf("%d KV blocks", f.KVBlocks))
	}
	if rateScale != 1 {
		parts = append(parts, fmt.Sprintf("%gx the rate", rateScale))
	}
	return "simulated " + strings.Join(parts, ", ")
}

// sloLimits are the p95/p99 limits a sweep checks.
type sloLimits struct{ ttft, tpot float64 }

func parseSLO(s string) (sloLimits, error) {
	l := sloLimits{ttft: math.Inf(1), tpot: math.Inf(1)}
	for _, part := range strings.Split(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		d, err := time.ParseDuration(value)
		if !ok || err != nil || d <= 0 {
			return l, fmt.Errorf("want ttft=DURATION,tpot=DURATION, got %q", part)
		}
		switch name {
		case "ttft":
			l.ttft = d.Seconds()
		case "tpot":
			l.tpot = d.Seconds()
		default:
			return l, fmt.Errorf("unknown limit %q (ttft, tpot)", name)
		}
	}
	return l, nil
}

func parseSweep(s string) (from, to int, err error) {
	what, span, ok := strings.Cut(s, "=")
	lo, hi, ok2 := strings.Cut(span, "..")
	if !ok || !ok2 || what != "replicas" {
		return 0, 0, fmt.Errorf("want replicas=FROM..TO, got %q", s)
	}
	if from, err = strconv.Atoi(lo); err == nil {
		to, err = strconv.Atoi(hi)
	}
	if err != nil || from < 1 || to < from || to-from > 200 {
		return 0, 0, errors.New("want 1 <= FROM <= TO, at most 200 apart")
	}
	return from, to, nil
}

// sweepRow is one fleet size of a sweep.
type sweepRow struct {
	Replicas int               `json:"replicas"`
	TTFT     compare.Quantiles `json:"ttft"`
	TPOT     compare.Quantiles `json:"tpot"`
	MeetsP95 bool              `json:"meets_slo_p95"`
	MeetsP99 bool              `json:"meets_slo_p99"`
}

// poolSweep is one model pool's sweep.
type poolSweep struct {
	Model       string     `json:"model"`
	Fleet       string     `json:"fleet"`
	Rows        []sweepRow `json:"rows"`
	SmallestP95 int        `json:"smallest_meeting_p95"` // 0: none in the range
	SmallestP99 int        `json:"smallest_meeting_p99"`
}

type sweepReport struct {
	TTFTLimit float64     `json:"ttft_limit_seconds"`
	TPOTLimit float64     `json:"tpot_limit_seconds"`
	Pools     []poolSweep `json:"pools"`
}

func (r sweepReport) Text(w io.Writer) error {
	for i, p := range r.Pools {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s on %s, SLO TTFT %s and TPOT %s\n", p.Model, p.Fleet, compare.Seconds(r.TTFTLimit), compare.Seconds(r.TPOTLimit))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "replicas\tTTFT p50 / p95 / p99\tTPOT p50 / p95 / p99\tmeets at p95\tat p99\t\n")
		yes := map[bool]string{true: "yes", false: "no"}
		for _, row := range p.Rows {
			fmt.Fprintf(tw, "%d\t%s / %s / %s\t%s / %s / %s\t%s\t%s\t\n", row.Replicas,
				compare.Seconds(float64(row.TTFT.P50)), compare.Seconds(float64(row.TTFT.P95)), compare.Seconds(float64(row.TTFT.P99)),
				compare.Seconds(float64(row.TPOT.P50)), compare.Seconds(float64(row.TPOT.P95)), compare.Seconds(float64(row.TPOT.P99)),
				yes[row.MeetsP95], yes[row.MeetsP99])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		say := func(n int, at string) {
			if n == 0 {
				fmt.Fprintf(w, "no fleet in the range meets the SLO at %s\n", at)
			} else {
				fmt.Fprintf(w, "smallest fleet meeting the SLO at %s: %d replicas\n", at, n)
			}
		}
		say(p.SmallestP95, "p95")
		say(p.SmallestP99, "p99")
	}
	return nil
}

func (s simulation) sweep(stdout, stderr io.Writer, from, to int, limits sloLimits, asJSON bool) int {
	pools, err := s.calibrate(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "servescope replay: %v\n", err)
		return 1
	}
	rep := sweepReport{TTFTLimit: limits.ttft, TPOTLimit: limits.tpot}
	for _, p := range pools {
		unsized := p.target
		unsized.Replicas = 0
		ps := poolSweep{Model: p.model, Fleet: describe(unsized, s.rateScale)}
		wl := p.workload.Scaled(s.rateScale)
		for n := from; n <= to; n++ {
			f := p.target
			f.Replicas = n
			predicted, err := replay.Simulate(wl, f, p.cal, time.Unix(0, 0))
			if err != nil {
				fmt.Fprintf(stderr, "servescope replay: model %s: %v\n", p.model, err)
				return 1
			}
			var ttft, tpot []float64
			for _, r := range predicted {
				ttft = append(ttft, r.TTFT)
				if !math.IsNaN(r.TPOT) {
					tpot = append(tpot, r.TPOT)
				}
			}
			sort.Float64s(ttft)
			sort.Float64s(tpot)
			row := sweepRow{Replicas: n, TTFT: compare.QuantilesOf(ttft), TPOT: compare.QuantilesOf(tpot)}
			row.MeetsP95 = float64(row.TTFT.P95) <= limits.ttft && float64(row.TPOT.P95) <= limits.tpot
			row.MeetsP99 = float64(row.TTFT.P99) <= limits.ttft && float64(row.TPOT.P99) <= limits.tpot
			if row.MeetsP95 && ps.SmallestP95 == 0 {
				ps.SmallestP95 = n
			}
			if row.MeetsP99 && ps.SmallestP99 == 0 {
				ps.SmallestP99 = n
			}
			ps.Rows = append(ps.Rows, row)
		}
		rep.Pools = append(rep.Pools, ps)
	}
	return write(stdout, stderr, rep, asJSON)
}
