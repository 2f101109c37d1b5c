package replay

import (
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/spanfile"
)

// The recording: the simulator's traffic_spike on two vLLM replicas, seed 5, a minute of arrivals and
// two minutes to finish them, its explained spans written by the collector binary's file exporter
// (testdata/README.md says how).
const (
	recording         = "testdata/spike-2-replicas.jsonl.gz"
	recordedReplicas  = 2
	recordedSeed      = 5
	recordedDuration  = time.Minute
	fidelityRecorded  = 0.15
	fidelityOtherSize = 0.25
)

type figures struct{ ttft50, ttft95, tpot50, tpot95 float64 }

func figuresOf(ttft, tpot []float64) figures {
	q := func(v []float64, p float64) float64 {
		sort.Float64s(v)
		return v[int(math.Ceil(p*float64(len(v))))-1]
	}
	return figures{q(ttft, 0.5), q(ttft, 0.95), q(tpot, 0.5), q(tpot, 0.95)}
}

func predictedFigures(rs []spanfile.Request) figures {
	var ttft, tpot []float64
	for _, r := range rs {
		ttft = append(ttft, r.TTFT)
		if !math.IsNaN(r.TPOT) {
			tpot = append(tpot, r.TPOT)
		}
	}
	return figuresOf(ttft, tpot)
}

// rerun is the simulator itself on n replicas with the recording's arrivals: the same scenario and seed,
// the tenants' per-replica rates scaled so that the fleet gets the same traffic.
func rerun(t *testing.T, n int) figures {
	cfg := fleetsim.DefaultConfig()
	sc, err := fleetsim.LookupScenario("traffic_spike")
	require.NoError(t, err)
	sc.LoadFactor = float64(recordedReplicas) / float64(n)
	cfg.Scenario, cfg.Seed, cfg.Duration, cfg.Drain = sc, recordedSeed, recordedDuration, 10*time.Minute
	cfg.Engines = nil
	for range n {
		cfg.Engines = append(cfg.Engines, fleetsim.EngineVLLM)
	}
	f, err := fleetsim.New(cfg)
	require.NoError(t, err)
	f.RunToEnd()
	var ttft, tpot []float64
	for _, r := range f.GroundTruth() {
		ttft = append(ttft, r.TTFTS)
		if r.CompletionTokens > 1 {
			tpot = append(tpot, r.TPOTS)
		}
	}
	return figuresOf(ttft, tpot)
}

func within(t *testing.T, want, got figures, tolerance float64, what string) {
	t.Helper()
	for _, c := range []struct {
		name      string
		want, got float64
	}{{"p50 TTFT", want.ttft50, got.ttft50}, {"p95 TTFT", want.ttft95, got.ttft95}, {"p50 TPOT", want.tpot50, got.tpot50}, {"p95 TPOT", want.tpot95, got.tpot95}} {
		assert.InEpsilon(t, c.want, c.got, tolerance, "%s: %s %.4g against %.4g", what, c.name, c.got, c.want)
	}
}

// Replay fidelity (issue 19), on the simulator's own ground truth: the recording replayed on its own
// fleet gives its p50 and p95 TTFT and TPOT within 15%; on twice and half the replicas, the simulator
// re-run on that many with the same arrivals within 25% at p95 (p50 is reported, not asserted: on half the
// fleet every request queues behind the spike, and the median moves with the queue's exact drain).
func TestReplayFidelity(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a recorded minute several times in the simulator")
	}
	f, err := spanfile.Read(recording)
	require.NoError(t, err)
	wl, skipped := FromRequests(f.Requests)
	require.Zero(t, skipped)
	var recTTFT, recTPOT []float64
	for _, r := range wl {
		recTTFT = append(recTTFT, r.Recorded.TTFT)
		if r.OutputTokens > 1 {
			recTPOT = append(recTPOT, r.Recorded.TPOT)
		}
	}
	recorded := figuresOf(recTTFT, recTPOT)
	fleet := Fleet{Replicas: recordedReplicas, Engine: "vllm"}
	cal, err := Calibrate(wl, fleet)
	require.NoError(t, err)
	t.Logf("calibration: MFU %.3f, HBM efficiency %.3f after %d rounds (prefill %.4g s/token recorded, %.4g replayed; TPOT %.4g, %.4g)",
		cal.MFU, cal.HBMEfficiency, cal.Rounds, cal.RecordedPrefillPerToken, cal.PredictedPrefillPerToken, cal.RecordedTPOT, cal.PredictedTPOT)

	same, err := Simulate(wl, fleet, cal, time.Unix(0, 0))
	require.NoError(t, err)
	require.Len(t, same, len(wl), "every recorded request is replayed and finishes")
	got := predictedFigures(same)
	t.Logf("recorded fleet (%d): recorded %+v, replayed %+v", recordedReplicas, recorded, got)
	within(t, recorded, got, fidelityRecorded, "replay on the recorded fleet")

	for _, n := range []int{2 * recordedReplicas, recordedReplicas / 2} {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			other := fleet
			other.Replicas = n
			replayed, err := Simulate(wl, other, cal, time.Unix(0, 0))
			require.NoError(t, err)
			got, want := predictedFigures(replayed), rerun(t, n)
			t.Logf("%d replicas: simulator re-run %+v, replay %+v", n, want, got)
			for _, c := range []struct {
				name      string
				want, got float64
			}{{"p95 TTFT", want.ttft95, got.ttft95}, {"p95 TPOT", want.tpot95, got.tpot95}} {
				assert.InEpsilon(t, c.want, c.got, fidelityOtherSize, "%d replicas: %s", n, c.name)
			}
		})
	}
}
