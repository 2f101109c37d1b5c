package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/datapoints"
	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/schema"
)

// Two tiers, as documented (config/examples/sidecar-to-gateway.yaml and gateway.yaml), on a simulated fleet:
// three replicas (vLLM, SGLang, vLLM) hit by a traffic spike from a third of the run on. Each replica has
// its own sidecar, which scrapes only that replica's engine and dcgm-exporter and receives only that
// replica's request spans (the simulator sends each replica's to its own sidecar); the sidecars send
// everything to one gateway, which writes it to files. Every replica's explained spans, engine, GPU and
// signal metrics, slow-request logs and the saturation incident the spike causes on it arrive at the
// gateway naming it, and nothing of one replica arrives under another's name: explained spans and
// slow-request records are checked against the simulator's ground truth (which replica served each trace;
// a slow-request record names the replica whose state its sidecar joined, so a sidecar given another
// replica's spans shows there), metrics against the engine and the GPUs each replica has.
func TestFleetSidecarsToGateway(t *testing.T) {
	started := time.Now()
	sim := buildSimulator(t)
	dir := t.TempDir()
	examples := "../../config/examples/"

	gatewayOTLP := freePort(t)
	startCollector(t, readConfig(t, examples+"gateway.yaml"),
		"SERVESCOPE_OTLP_GRPC_ENDPOINT="+gatewayOTLP, "SERVESCOPE_OUTPUT_DIR="+dir, "SERVESCOPE_TELEMETRY_PORT="+port(t))

	const replicas = 3
	var grpcPorts, httpPorts, spanEndpoints []string
	for range replicas {
		grpcPorts, httpPorts = append(grpcPorts, freePort(t)), append(httpPorts, freePort(t))
		spanEndpoints = append(spanEndpoints, "http://"+httpPorts[len(httpPorts)-1])
	}
	truthPath := filepath.Join(dir, "truth.jsonl")
	// The replicas' ports come from the harness too: left to pick free ones itself, the simulator was once
	// given a port just handed to a sidecar's OTLP receiver (closed until that sidecar started).
	simPorts := freePortRange(t, 2*replicas)
	st := startSimulator(t, sim, "-scenario", "traffic_spike", "-replicas", fmt.Sprint(replicas), "-engines", "vllm,sglang",
		"-duration", "30s", "-drain", "5s", "-status-every", "0", "-ground-truth", truthPath, "-base-port", strconv.Itoa(simPorts),
		"-otlp-endpoint", strings.Join(spanEndpoints, ","))
	require.Len(t, st.Replicas, replicas)

	sidecar := readConfig(t, examples+"sidecar-to-gateway.yaml")
	fleet := map[string]fleetsim.Endpoint{} // by service.instance.id
	gpuOwner := map[string]string{}         // GPU UUID -> the instance of the replica it serves
	for i, ep := range st.Replicas {
		fleet[ep.Instance] = ep
		for _, g := range ep.GPUs {
			gpuOwner[g.UUID] = ep.Instance
		}
		config := sidecar
		if ep.Engine != fleetsim.EngineVLLM { // the example's note: the engine's receiver in vllm's place
			require.Contains(t, config, "\n  vllm:\n")
			require.Contains(t, config, "receivers: [vllm, ")
			config = strings.Replace(config, "\n  vllm:\n", "\n  "+ep.Engine+":\n", 1)
			config = strings.Replace(config, "receivers: [vllm, ", "receivers: ["+ep.Engine+", ", 1)
		}
		startCollector(t, config,
			"SERVESCOPE_ENGINE_ENDPOINT="+ep.URL,
			"SERVESCOPE_DCGM_TARGET="+strings.TrimPrefix(ep.DCGM, "http://"),
			"SERVESCOPE_REPLICA="+ep.Instance,
			"SERVESCOPE_QUEUE_DIR="+t.TempDir(),
			"SERVESCOPE_OTLP_GRPC_ENDPOINT="+grpcPorts[i],
			"SERVESCOPE_OTLP_HTTP_ENDPOINT="+httpPorts[i],
			"SERVESCOPE_GATEWAY="+gatewayOTLP,
			"SERVESCOPE_SCRAPE_INTERVAL=1s",
			"SERVESCOPE_SIGNALS_INTERVAL=1s",
			"SERVESCOPE_TELEMETRY_PORT="+port(t))
	}
	view := newGatewayView(dir, fleet, gpuOwner)
	done := func() bool {
		view.read(t)
		for inst, ep := range fleet {
			r := view.replicas[inst]
			if r.explained == 0 || r.enginePoints == 0 || r.gpuPoints == 0 || r.signalPoints == 0 || r.slowLogs == 0 ||
				r.incidents["scheduler_saturation"] == 0 {
				return false
			}
			if ep.Engine == fleetsim.EngineSGLang && r.explainedSGLang == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(75 * time.Second); !done(); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			for _, ep := range st.Replicas {
				t.Logf("%s %s: %+v", ep.Replica, ep.Instance, *view.replicas[ep.Instance])
			}
			t.Fatalf("not every replica's explained spans, engine, GPU and signal metrics, slow-request logs and saturation incident at the gateway within 75s; violations %v", view.violations)
		}
	}
	t.Logf("everything at the gateway %s after the start (the simulator built and started, four collectors started)", time.Since(started).Round(time.Second))

	// Which replica served each request, by the simulator's ground truth: every explained span arrived under
	// the replica that served its trace.
	served := map[string]string{}
	for _, line := range lines(truthPath) {
		var tr fleetsim.Truth
		if json.Unmarshal([]byte(line), &tr) == nil {
			served[tr.TraceID] = tr.Instance
		}
	}
	for trace, inst := range view.spanTraces {
		if want, ok := served[trace]; assert.True(t, ok, "trace %s is one of the simulator's", trace) {
			assert.Equal(t, want, inst, "trace %s arrived under the replica that served it", trace)
		}
	}
	for trace, inst := range view.slowLogTraces {
		assert.Equal(t, served[trace], inst, "the slow-request record of trace %s names the replica that served it", trace)
	}
	assert.Empty(t, view.violations, "no replica's data under another's name")

	for _, ep := range st.Replicas {
		r := view.replicas[ep.Instance]
		t.Logf("%s %s (%s): %d explained spans %v, %d engine points as llm.engine.name=%s, %d GPU points of its GPU %s, "+
			"%d signal points, %d slow-request logs, incidents started %v",
			ep.Replica, ep.Instance, ep.Engine, r.explained, r.causes, r.enginePoints, ep.Engine, r.gpuPoints, ep.GPUs[0].UUID,
			r.signalPoints, r.slowLogs, r.incidents)
	}
	t.Logf("%d explained traces and %d slow-request records checked against the ground truth; %d violations; %s since the start",
		len(view.spanTraces), len(view.slowLogTraces), len(view.violations), time.Since(started).Round(time.Second))
}

// replicaView is what the gateway received under one replica's name.
type replicaView struct {
	explained, explainedSGLang int
	causes                     map[string]int
	enginePoints, gpuPoints    int
	signalPoints               int
	slowLogs                   int
	incidents                  map[string]int // start records by detector
}

// gatewayView reads the gateway's files as they grow and sorts what arrives by replica.
type gatewayView struct {
	traces, metrics, logs *jsonlTail
	fleet                 map[string]fleetsim.Endpoint
	gpuOwner              map[string]string
	replicas              map[string]*replicaView
	spanTraces            map[string]string // trace id -> the replica its explained engine span named
	slowLogTraces         map[string]string
	violations            []string
}

func newGatewayView(dir string, fleet map[string]fleetsim.Endpoint, gpuOwner map[string]string) *gatewayView {
	v := &gatewayView{
		traces: &jsonlTail{path: filepath.Join(dir, "traces.jsonl")}, metrics: &jsonlTail{path: filepath.Join(dir, "metrics.jsonl")},
		logs: &jsonlTail{path: filepath.Join(dir, "logs.jsonl")}, fleet: fleet, gpuOwner: gpuOwner,
		replicas: map[string]*replicaView{}, spanTraces: map[string]string{}, slowLogTraces: map[string]string{},
	}
	for inst := range fleet {
		v.replicas[inst] = &replicaView{causes: map[string]int{}, incidents: map[string]int{}}
	}
	return v
}

func (v *gatewayView) violation(format string, args ...any) {
	if len(v.violations) < 20 {
		v.violations = append(v.violations, fmt.Sprintf(format, args...))
	}
}

// known says whether inst is one of the fleet's replicas, recording a violation when it is not.
func (v *gatewayView) known(inst, what string) bool {
	if _, ok := v.fleet[inst]; !ok {
		v.violation("%s names %q, no replica of the fleet", what, inst)
		return false
	}
	return true
}

func (v *gatewayView) read(t *testing.T) {
	for _, line := range v.traces.next(t) {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(line)
		require.NoError(t, err)
		v.addTraces(td)
	}
	for _, line := range v.metrics.next(t) {
		md, err := (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(line)
		require.NoError(t, err)
		v.addMetrics(md)
	}
	for _, line := range v.logs.next(t) {
		ld, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(line)
		require.NoError(t, err)
		v.addLogs(ld)
	}
}

func (v *gatewayView) addTraces(td ptrace.Traces) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		inst := str(rs.Resource().Attributes(), schema.AttrServiceInstanceID)
		service := str(rs.Resource().Attributes(), "service.name")
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				a := sp.Attributes()
				cause, explained := a.Get(schema.AttrLLMRootCause)
				if !explained {
					continue
				}
				if !v.known(inst, "explained span "+sp.Name()) {
					continue
				}
				for _, key := range []string{schema.AttrLLMLatencyQueue, schema.AttrLLMLatencyPrefill, schema.AttrLLMLatencyDecode, schema.AttrLLMLatencyE2e} {
					if _, ok := a.Get(key); !ok {
						v.violation("explained span of %s without %s", inst, key)
					}
				}
				if want := v.fleet[inst].Engine; service != want {
					v.violation("explained %s span under replica %s, which runs %s", service, inst, want)
				}
				r := v.replicas[inst]
				r.explained++
				if service == fleetsim.EngineSGLang {
					r.explainedSGLang++
				}
				r.causes[cause.Str()]++
				trace := sp.TraceID().String()
				if prev, ok := v.spanTraces[trace]; ok && prev != inst {
					v.violation("trace %s explained under %s and %s", trace, prev, inst)
				}
				v.spanTraces[trace] = inst
			}
		}
	}
}

func (v *gatewayView) addMetrics(md pmetric.Metrics) {
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		rm := md.ResourceMetrics().At(i)
		res := rm.Resource().Attributes()
		inst := str(res, schema.AttrServiceInstanceID)
		if inst != "" && !v.known(inst, "metrics resource") {
			continue
		}
		if engine := str(res, schema.AttrLLMEngineName); inst != "" && engine != "" && engine != v.fleet[inst].Engine {
			v.violation("%s metrics under replica %s, which runs %s", engine, inst, v.fleet[inst].Engine)
		}
		for j := 0; j < rm.ScopeMetrics().Len(); j++ {
			ms := rm.ScopeMetrics().At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				datapoints.EachAttributes(m, func(attrs pcommon.Map) {
					pointInst := inst
					if p := str(attrs, schema.AttrServiceInstanceID); p != "" {
						if !v.known(p, m.Name()+" point") {
							return
						}
						if inst != "" && p != inst {
							v.violation("%s point of %s under resource %s", m.Name(), p, inst)
						}
						pointInst = p
					}
					if uuid := str(attrs, schema.AttrHwID); uuid != "" && v.gpuOwner[uuid] != "" {
						if pointInst != v.gpuOwner[uuid] {
							v.violation("%s of GPU %s (of %s) under replica %q", m.Name(), uuid, v.gpuOwner[uuid], pointInst)
							return
						}
						v.replicas[pointInst].gpuPoints++
					}
					switch {
					case pointInst == "":
					case m.Name() == schema.MetricLLMSchedulerRequestsWaiting && str(res, schema.AttrLLMEngineName) == v.fleet[pointInst].Engine:
						v.replicas[pointInst].enginePoints++
					case m.Name() == schema.MetricLLMReplicaHealthScore:
						v.replicas[pointInst].signalPoints++
					}
				})
			}
		}
	}
}

func (v *gatewayView) addLogs(ld plog.Logs) {
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		rl := ld.ResourceLogs().At(i)
		for j := 0; j < rl.ScopeLogs().Len(); j++ {
			recs := rl.ScopeLogs().At(j).LogRecords()
			for k := 0; k < recs.Len(); k++ {
				rec := recs.At(k)
				a := rec.Attributes()
				inst := str(a, schema.AttrServiceInstanceID)
				if inst == "" {
					inst = str(rl.Resource().Attributes(), schema.AttrServiceInstanceID)
				}
				if detector := str(a, schema.AttrLLMIncidentDetector); detector != "" {
					if inst != "" && v.known(inst, detector+" incident") && str(a, schema.AttrLLMIncidentState) == "start" {
						v.replicas[inst].incidents[detector]++
					}
					continue
				}
				if !rec.TraceID().IsEmpty() && v.known(inst, "slow-request record") { // llm_root_cause's slow request
					v.replicas[inst].slowLogs++
					v.slowLogTraces[rec.TraceID().String()] = inst
				}
			}
		}
	}
}

func str(m pcommon.Map, key string) string {
	if v, ok := m.Get(key); ok {
		return v.AsString()
	}
	return ""
}

// jsonlTail reads a file that an exporter appends JSON lines to: each call returns the complete lines
// written since the previous one.
type jsonlTail struct {
	path   string
	offset int64
}

func (j *jsonlTail) next(t *testing.T) [][]byte {
	f, err := os.Open(j.path)
	if err != nil {
		return nil // not written yet
	}
	defer f.Close()
	_, err = f.Seek(j.offset, io.SeekStart)
	require.NoError(t, err)
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil
	}
	j.offset += int64(end) + 1
	return bytes.Split(b[:end], []byte("\n"))
}

func readConfig(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// port is a free loopback port's number.
func port(t *testing.T) string {
	_, p, err := net.SplitHostPort(freePort(t))
	require.NoError(t, err)
	return p
}

// simStartup is the part of servescope-sim's first stdout line that a harness needs.
type simStartup struct {
	Scenario string              `json:"scenario"`
	Replicas []fleetsim.Endpoint `json:"replicas"`
}

// buildSimulator builds cmd/servescope-sim (or takes SERVESCOPE_SIM).
func buildSimulator(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SERVESCOPE_SIM"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "servescope-sim")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/servescope-sim").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// startSimulator runs the simulator, returns its startup line once its endpoints listen, and stops it at the
// end of the test.
func startSimulator(t *testing.T, bin string, args ...string) simStartup {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	lineCh := make(chan []byte, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadBytes('\n')
		lineCh <- line
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("simulator exited with %v:\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("simulator did not stop within 10s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("simulator stderr:\n%s", stderr.String())
		}
	})
	var st simStartup
	select {
	case line := <-lineCh:
		require.NoError(t, json.Unmarshal(line, &st), "startup line %q; stderr:\n%s", line, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no startup line from the simulator within 30s; stderr:\n%s", stderr.String())
	}
	require.True(t, slices.ContainsFunc(st.Replicas, func(ep fleetsim.Endpoint) bool { return ep.Instance != "" }))
	return st
}
