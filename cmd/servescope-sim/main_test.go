package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/promtext"
)

func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

// TestRunOnFreePorts starts the command as a harness would (free ports, faster than real time), reads the
// endpoints from its first stdout line, scrapes a replica twice and sees its counters grow, then stops it
// the way SIGINT does and checks the ground truth it wrote.
func TestRunOnFreePorts(t *testing.T) {
	truthPath := filepath.Join(t.TempDir(), "truth.jsonl")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"-scenario", "traffic_spike", "-replicas", "3", "-engines", "vllm,sglang", "-speed", "10",
			"-base-port", "0", "-ground-truth", truthPath, "-status-every", "0",
		}, pw, io.Discard)
		pw.Close()
	}()

	line, err := bufio.NewReader(pr).ReadBytes('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, pr) //nolint:errcheck
	var st startup
	require.NoError(t, json.Unmarshal(line, &st), string(line))
	assert.Equal(t, "traffic_spike", st.Scenario)
	require.Len(t, st.Replicas, 3)
	assert.Equal(t, []string{"vllm", "sglang", "vllm"}, []string{st.Replicas[0].Engine, st.Replicas[1].Engine, st.Replicas[2].Engine})
	assert.Equal(t, 20.0, st.FaultStartS)

	ep := st.Replicas[0]
	first := scrape(t, ep.URL+ep.MetricsPath)
	time.Sleep(400 * time.Millisecond)
	second := scrape(t, ep.URL+ep.MetricsPath)
	assert.Zero(t, promtext.Parse(second).ErrorCount)
	assert.Greater(t, fixtures.Sum(second, "vllm:generation_tokens_total"), fixtures.Sum(first, "vllm:generation_tokens_total"))
	assert.Greater(t, fixtures.Sum(second, "vllm:request_success_total"), fixtures.Sum(first, "vllm:request_success_total"))
	assert.Contains(t, string(scrape(t, ep.DCGM+"/metrics")), `pod="vllm-0"`)

	cancel() // what SIGINT and SIGTERM do
	select {
	case err := <-done:
		require.NoError(t, err, "a signal is a clean stop")
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
	_, err = http.Get(ep.URL + "/metrics")
	assert.Error(t, err, "endpoints are closed after the stop")

	body, err := os.ReadFile(truthPath)
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSpace(body), []byte("\n"))
	require.NotEmpty(t, lines)
	instances := map[string]bool{}
	for _, r := range st.Replicas {
		instances[r.Instance] = true
	}
	for _, l := range lines {
		var tr fleetsim.Truth
		require.NoError(t, json.Unmarshal(l, &tr), string(l))
		assert.True(t, instances[tr.Instance], "ground truth names the replica's service.instance.id, got %q", tr.Instance)
		assert.Contains(t, fleetsim.CauseNames(), tr.Cause)
	}
}

// TestFastRunWritesGroundTruth runs a scenario as fast as possible to its end.
func TestFastRunWritesGroundTruth(t *testing.T) {
	truthPath := filepath.Join(t.TempDir(), "truth.jsonl")
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), []string{
		"-scenario", "kv_pressure", "-speed", "0", "-duration", "40s", "-ground-truth", truthPath, "-seed", "7",
	}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "finished ")
	body, err := os.ReadFile(truthPath)
	require.NoError(t, err)
	n, slow := 0, 0
	for _, l := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
		var tr fleetsim.Truth
		require.NoError(t, json.Unmarshal(l, &tr))
		n++
		if tr.Slow {
			slow++
		}
	}
	assert.Greater(t, n, 200)
	assert.Positive(t, slow)
}

// TestNCCLDir: with -nccl-dir, each tensor-parallel replica writes one Inspector file per rank, and the
// startup line says which are whose.
func TestNCCLDir(t *testing.T) {
	dir := t.TempDir()
	var stdout bytes.Buffer
	require.NoError(t, run(context.Background(), []string{
		"-scenario", "tp_imbalance", "-replicas", "2", "-speed", "0", "-duration", "4s", "-drain", "2s",
		"-nccl-dir", dir, "-status-every", "0",
	}, &stdout, io.Discard))
	var st startup
	require.NoError(t, json.Unmarshal(bytes.SplitN(stdout.Bytes(), []byte("\n"), 2)[0], &st))
	require.Len(t, st.Replicas, 2)
	for _, ep := range st.Replicas {
		files, err := filepath.Glob(ep.NCCLFiles)
		require.NoError(t, err)
		require.Len(t, files, 2, "%s: %s", ep.Replica, ep.NCCLFiles)
		for _, f := range files {
			assert.Regexp(t, `^`+ep.Host+`-pid\d+\.log$`, filepath.Base(f))
			body, err := os.ReadFile(f)
			require.NoError(t, err)
			assert.Contains(t, string(body), `"comm_name":"TP Group 0"`)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "nope"},
		{"-engines", "vllm,tgi"},
		{"-duration", "0s"},
		{"extra"},
		{"-replicas", "3", "-otlp-endpoint", "http://127.0.0.1:1,http://127.0.0.1:2"},
	} {
		assert.Error(t, run(context.Background(), args, io.Discard, io.Discard), "%v", args)
	}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-list-scenarios"}, &out, io.Discard))
	for _, name := range fleetsim.ScenarioNames() {
		assert.Contains(t, out.String(), name)
	}
}

// -otlp-endpoint with one endpoint per replica: each replica's requests, their whole traces, go to its own
// endpoint (a sidecar collector per replica), and none to another's.
func TestOTLPEndpointPerReplica(t *testing.T) {
	type sink struct {
		mu        sync.Mutex
		instances map[string]int // engine spans by the service.instance.id of their resource
		traces    map[string]bool
		spans     int
	}
	var sinks []*sink
	var urls []string
	for range 3 {
		s := &sink{instances: map[string]int{}, traces: map[string]bool{}}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			req := ptraceotlp.NewExportRequest()
			if err := req.UnmarshalProto(body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			td := req.Traces()
			s.mu.Lock()
			defer s.mu.Unlock()
			s.spans += td.SpanCount()
			for i := 0; i < td.ResourceSpans().Len(); i++ {
				rs := td.ResourceSpans().At(i)
				inst, _ := rs.Resource().Attributes().Get("service.instance.id")
				spans := rs.ScopeSpans().At(0).Spans()
				for j := 0; j < spans.Len(); j++ {
					s.traces[spans.At(j).TraceID().String()] = true
					if inst.Str() != "" {
						s.instances[inst.Str()]++
					}
				}
			}
			resp, _ := ptraceotlp.NewExportResponse().MarshalProto()
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.Write(resp) //nolint:errcheck
		}))
		t.Cleanup(srv.Close)
		sinks, urls = append(sinks, s), append(urls, srv.URL)
	}

	truthPath := filepath.Join(t.TempDir(), "truth.jsonl")
	var stdout bytes.Buffer
	require.NoError(t, run(context.Background(), []string{
		"-replicas", "3", "-engines", "vllm,sglang", "-speed", "0", "-duration", "20s", "-status-every", "0",
		"-ground-truth", truthPath, "-otlp-endpoint", urls[0] + "," + urls[1] + ", " + urls[2],
	}, &stdout, io.Discard))
	var st startup
	require.NoError(t, json.Unmarshal(bytes.SplitN(stdout.Bytes(), []byte("\n"), 2)[0], &st))
	require.Len(t, st.Replicas, 3)

	body, err := os.ReadFile(truthPath)
	require.NoError(t, err)
	want := make([]map[string]bool, 3) // per replica, the traces of its requests
	index := map[string]int{}
	for i, r := range st.Replicas {
		index[r.Instance] = i
		want[i] = map[string]bool{}
	}
	for _, l := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
		var tr fleetsim.Truth
		require.NoError(t, json.Unmarshal(l, &tr))
		want[index[tr.Instance]][tr.TraceID] = true
	}
	for i, s := range sinks {
		s.mu.Lock()
		assert.NotEmpty(t, want[i], "requests on replica %d", i)
		assert.Equal(t, want[i], s.traces, "replica %d's endpoint gets exactly its requests' traces", i)
		assert.Equal(t, map[string]int{st.Replicas[i].Instance: s.instances[st.Replicas[i].Instance]}, s.instances,
			"replica %d's endpoint gets engine spans of that replica only", i)
		assert.Positive(t, s.instances[st.Replicas[i].Instance])
		s.mu.Unlock()
	}
}
