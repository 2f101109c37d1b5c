package e2e

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/replay"
	"github.com/servescope/servescope/internal/replay/replaytest"
	"github.com/servescope/servescope/internal/spanfile"
)

func servescopeBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "servescope")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/servescope").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// Issue 19 end to end: the collector binary keeps a simulated spike's explained spans with the shipped
// example (config/examples/keep-explained-spans.yaml); the servescope binary compares the spike's start
// with its middle, and replays the file against an OpenAI-compatible stand-in on loopback, bounded,
// each request with its recorded prompt and output length, at its recorded time (scaled).
func TestKeepCompareReplayThroughTheBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a simulated half minute in real time")
	}
	t.Parallel()
	sim, cli := simulatorBinary(t), servescopeBinary(t)
	config, err := os.ReadFile("../../config/examples/keep-explained-spans.yaml")
	require.NoError(t, err)
	spans := filepath.Join(t.TempDir(), "explained-spans.jsonl")
	base, otlp := freePortRange(t, 2), freePort(t)
	c := startCollector(t, string(config),
		"SERVESCOPE_VLLM_ENDPOINT=http://127.0.0.1:"+strconv.Itoa(base), "SERVESCOPE_OTLP_HTTP_ENDPOINT="+otlp,
		"SERVESCOPE_SPANS_FILE="+spans)
	time.Sleep(2 * time.Second)
	cmd := exec.Command(sim, "-scenario", "traffic_spike", "-replicas", "1", "-engines", "vllm", "-duration", "30s",
		"-drain", "20s", "-base-port", strconv.Itoa(base), "-otlp-endpoint", "http://"+otlp, "-status-every", "0", "-seed", "9")
	var simErr syncBuffer
	cmd.Stderr = &simErr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, simErr.String())
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		t.Fatalf("the simulator did not finish: %s", simErr.String())
	}
	time.Sleep(4 * time.Second) // the connector's wait after the last span, and the exporter's flush
	c.stop(t)

	f, err := spanfile.Read(spans)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(f.Requests), 50, "the spike's requests were explained and kept")

	out, err := exec.Command(cli, "compare", spans+"@..10s", spans+"@+10s..").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "requests")
	assert.Contains(t, string(out), "TTFT p50/p95/p99")
	out, err = exec.Command(cli, "compare", "--request", f.Requests[len(f.Requests)/2].ID, spans).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "requests like it")

	srv := &replaytest.StandIn{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	const sent, scale = 30, 4
	out, err = exec.Command(cli, "replay", spans, "--target", ts.URL, "--rate-scale", strconv.Itoa(scale),
		"--max-requests", strconv.Itoa(sent)).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "sent 30 of ")
	wl, _ := replay.FromRequests(f.Requests)
	wl = wl.Scaled(scale)[:sent]
	got := srv.Requests()
	require.Len(t, got, sent, "bounded by --max-requests")
	lengths := map[[2]int]int{}
	for _, r := range wl {
		lengths[[2]int{r.PromptTokens, r.OutputTokens}]++
	}
	for i, r := range got {
		lengths[[2]int{len(r.Words), r.MaxTokens}]--
		assert.InDelta(t, wl[i].At.Seconds(), r.At.Sub(got[0].At).Seconds(), 0.25, "request %d at its recorded time", i)
	}
	for k, n := range lengths {
		assert.Zero(t, n, "prompt and output lengths %v sent as recorded", k)
	}
	t.Logf("%d requests kept; replay:\n%s", len(f.Requests), strings.TrimSpace(string(out)))
}
