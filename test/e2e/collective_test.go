package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/schema"
)

// The tp_imbalance scenario end to end, explained from NCCL timings: the simulator (its command, as a
// process) runs two tensor-parallel vLLM replicas whose ranks write NCCL Inspector files, replica 0's rank 1
// straggling through the middle of the run; the collector scrapes both engines, reads the Inspector files
// with the nccl receiver and takes the request spans. Slow requests on replica 0 during the fault must come
// out as collective_wait naming rank 1, none on replica 1 may, and llm_signals must open a
// collective_bottleneck incident for replica 0 naming rank 1. The accuracy against the simulator's ground
// truth is logged (docs/accuracy.md quotes it).
func TestCollectiveWaitFromSimulatedNCCL(t *testing.T) {
	const replicas = 2
	const duration, drain = 36 * time.Second, 6 * time.Second
	sim := simulatorBinary(t)
	dir := t.TempDir()
	ncclDir, truthPath := filepath.Join(dir, "nccl"), filepath.Join(dir, "truth.jsonl")
	base := freePortRange(t, 2*replicas)
	otlpAddr := freePort(t)
	sink := newOTLPSink(t)

	// The collector first, so that it takes the simulator's first spans. The simulator's replica i serves
	// on 127.0.0.1:base+2i and its ranks write <ncclDir>/sim-node-<i>-pid<pid>.log (checked against its
	// startup line below).
	instances := make([]string, replicas)
	for i := range instances {
		instances[i] = "127.0.0.1:" + strconv.Itoa(base+2*i)
	}
	startCollector(t, collectiveConfig(instances, ncclDir, otlpAddr, sink.URL))

	cmd := exec.Command(sim, "-scenario", "tp_imbalance", "-replicas", strconv.Itoa(replicas), "-engines", "vllm",
		"-duration", duration.String(), "-drain", drain.String(), "-base-port", strconv.Itoa(base),
		"-otlp-endpoint", "http://"+otlpAddr, "-ground-truth", truthPath, "-nccl-dir", ncclDir, "-status-every", "0")
	var simOut, simErr syncBuffer
	cmd.Stdout, cmd.Stderr = &simOut, &simErr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	done := make(chan struct{}) // closed once Wait returned: ProcessState is not read while Wait runs
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			t.Logf("simulator stderr:\n%s", simErr.String())
		}
	})
	var line string
	require.Eventually(t, func() bool {
		line, _, _ = strings.Cut(simOut.String(), "\n")
		return line != "" && strings.Contains(simOut.String(), "\n")
	}, 30*time.Second, 50*time.Millisecond, "the simulator's startup line")
	var st struct {
		FaultStartS float64             `json:"fault_start_s"`
		FaultEndS   float64             `json:"fault_end_s"`
		Replicas    []fleetsim.Endpoint `json:"replicas"`
	}
	require.NoError(t, json.Unmarshal([]byte(line), &st), line)
	require.Len(t, st.Replicas, replicas)
	for i, ep := range st.Replicas {
		require.Equal(t, instances[i], ep.Instance)
		require.Equal(t, ncclFilesOf(ncclDir, i), ep.NCCLFiles)
	}

	select {
	case err := <-exited:
		require.NoError(t, err, simErr.String())
	case <-time.After(duration + drain + 30*time.Second):
		t.Fatal("the simulator did not finish")
	}
	t.Logf("simulator: %s", strings.TrimSpace(simErr.String()))

	// Every finished request of the ground truth comes out explained.
	var truth []fleetsim.Truth
	body, err := os.ReadFile(truthPath)
	require.NoError(t, err)
	for _, l := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
		var tr fleetsim.Truth
		require.NoError(t, json.Unmarshal(l, &tr), string(l))
		truth = append(truth, tr)
	}
	require.NotEmpty(t, truth)
	var ours map[string]map[string]any
	require.Eventually(t, func() bool {
		ours = explainedRequests(sink)
		for _, tr := range truth {
			if ours[tr.RequestID] == nil {
				return false
			}
		}
		return true
	}, 20*time.Second, 250*time.Millisecond, "every request in the ground truth is explained")

	var slow, match, faultSlow, faultCW, cwNamed int
	var waitShare []float64
	confusion := map[string]int{}
	for _, tr := range truth {
		got := ours[tr.RequestID]
		cause, _ := got[schema.AttrLLMRootCause].(string)
		if tr.Replica != "vllm-0" {
			assert.NotEqual(t, "collective_wait", cause, "%s on %s (no straggler): %v", tr.RequestID, tr.Replica, got[schema.AttrLLMRootCauseEvidence])
		}
		if cause == "collective_wait" {
			late, _ := got[schema.AttrLLMEvidenceCollectiveLateRank].(string)
			if strings.HasPrefix(late, "tp rank 1,") {
				cwNamed++
			}
			if v, ok := got[schema.AttrLLMEvidenceCollectiveWaitShare].(float64); ok {
				waitShare = append(waitShare, v)
			}
		}
		if !tr.Slow {
			continue
		}
		slow++
		confusion[tr.Cause+" -> "+cause]++
		if cause == tr.Cause {
			match++
		}
		if tr.Replica == "vllm-0" && tr.FaultActive {
			faultSlow++
			if cause == "collective_wait" {
				faultCW++
			}
		}
	}
	share := float64(faultCW) / float64(max(1, faultSlow))
	sort.Float64s(waitShare)
	t.Logf("replica 0 during the fault: %d of %d slow requests explained as collective_wait (%.0f%%); their wait share (evidence): median %.2f",
		faultCW, faultSlow, 100*share, median(waitShare))
	t.Logf("accuracy: the cause matches the ground truth for %d of %d slow requests (%.0f%%); %d requests in all; truth -> ours: %v",
		match, slow, 100*float64(match)/float64(max(1, slow)), len(truth), confusion)
	require.Greater(t, faultSlow, 10, "the straggler slows requests down")
	assert.GreaterOrEqual(t, share, 0.6, "collective_wait for a clear majority of replica 0's slow requests during the fault")
	total := 0
	for k, n := range confusion {
		if strings.HasSuffix(k, "-> collective_wait") {
			total += n
		}
	}
	assert.Equal(t, total, cwNamed, "every collective_wait names tp rank 1 as the late rank")

	// llm_signals: a collective_bottleneck incident on replica 0, naming rank 1; none on replica 1.
	incidents := map[string]map[string]any{}
	sink.mu.Lock()
	for _, ld := range sink.logs {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			sl := ld.ResourceLogs().At(i).ScopeLogs()
			for j := 0; j < sl.Len(); j++ {
				recs := sl.At(j).LogRecords()
				for k := 0; k < recs.Len(); k++ {
					a := recs.At(k).Attributes().AsRaw()
					if a[schema.AttrLLMIncidentDetector] == "collective_bottleneck" && a[schema.AttrLLMIncidentState] == "start" {
						id, _ := a[schema.AttrServiceInstanceID].(string)
						incidents[id] = a
						t.Logf("incident: %s", recs.At(k).Body().Str())
					}
				}
			}
		}
	}
	sink.mu.Unlock()
	require.Contains(t, incidents, instances[0], "a collective_bottleneck incident for replica 0")
	ev, _ := incidents[instances[0]]["llm.incident.evidence"].(map[string]any)
	assert.Contains(t, ev["late_rank"], "tp rank 1", "the incident names the straggler")
	assert.NotContains(t, incidents, instances[1], "no incident on the replica without a straggler")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return v[len(v)/2]
}

// collectiveConfig: engine receivers for the simulated replicas, the nccl receiver with one rule per replica
// (its files, its instance, its layout), and the spans; explained spans and incidents to sink.
func collectiveConfig(instances []string, ncclDir, otlpAddr, sinkURL string) string {
	var recv, names, rules strings.Builder
	for i, inst := range instances {
		fmt.Fprintf(&recv, "  vllm/%d:\n    endpoint: http://%s\n    collection_interval: 1s\n", i, inst)
		fmt.Fprintf(&names, "vllm/%d, ", i)
		fmt.Fprintf(&rules, "      - files: %q\n        service_instance_id: %q\n        engine: vllm\n        tensor_parallel_size: 2\n        all_reduce: nccl\n",
			ncclFilesOf(ncclDir, i), inst)
	}
	return fmt.Sprintf(`receivers:
%s  nccl:
    include: [%q]
    collection_interval: 1s
    gpu_lookup: none
    replicas:
%s  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  llm_normalize: {}
connectors:
  llm_root_cause:
    max_wait: 2s
    metrics_flush_interval: 2s
    slo:
      default: {ttft: 1s, tpot: 50ms, e2e: 40s}
  llm_signals:
    interval: 1s
    stale: 10s
%s  pipelines:
    metrics:
      receivers: [%snccl]
      processors: [llm_normalize]
      exporters: [llm_root_cause, llm_signals]
    traces:
      receivers: [otlp]
      exporters: [llm_root_cause]
    traces/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_http]
    metrics/explained:
      receivers: [llm_root_cause]
      exporters: [llm_signals]
    logs/incidents:
      receivers: [llm_signals]
      exporters: [otlp_http]
`, recv.String(), filepath.Join(ncclDir, "*.log"), rules.String(), otlpAddr, sinkBlock(sinkURL), names.String())
}

// ncclFilesOf is the simulator's glob for replica i's Inspector files.
func ncclFilesOf(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("sim-node-%d-pid*.log", i))
}

// explainedRequests returns the attributes of every exported span that llm_root_cause explained, by request id.
func explainedRequests(sink *otlpSink) map[string]map[string]any {
	sink.mu.Lock()
	defer sink.mu.Unlock()
	out := map[string]map[string]any{}
	for _, td := range sink.traces {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				spans := ss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					s := spans.At(k)
					if s.Name() != "llm_request" { // vLLM's span, which llm_root_cause explains
						continue
					}
					a := s.Attributes().AsRaw()
					if id, ok := a[schema.AttrGenAIRequestID].(string); ok && a[schema.AttrLLMRootCause] != nil {
						out[id] = a
					}
				}
			}
		}
	}
	return out
}

// simulatorBinary builds cmd/servescope-sim (or takes SERVESCOPE_SIM_BIN).
func simulatorBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SERVESCOPE_SIM_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "servescope-sim")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/servescope-sim")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}
