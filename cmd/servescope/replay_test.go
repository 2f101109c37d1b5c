package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/replay"
	"github.com/servescope/servescope/internal/replay/replaytest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/internal/spanfile"
)

// The recorded spike, its first 25 requests, sent 20 times faster to a stand-in: each request carries the
// recorded prompt length (one word a token) and output length, in the recorded order and at the recorded
// times (scaled), and the report counts what was sent and seen.
func TestReplayAgainstAStandIn(t *testing.T) {
	srv := &replaytest.StandIn{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var stdout, stderr bytes.Buffer
	code := run([]string{"replay", spike, "--target", ts.URL, "--rate-scale", "20", "--max-requests", "25", "--model", "staging-model"}, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())

	f, err := spanfile.Read(spike)
	require.NoError(t, err)
	wl, _ := replay.FromRequests(f.Requests)
	wl = wl.Scaled(20)[:25]

	got := srv.Requests()
	require.Len(t, got, 25, "bounded by --max-requests")
	byLength := map[[2]int]int{}
	for _, r := range wl {
		byLength[[2]int{r.PromptTokens, r.OutputTokens}]++
	}
	first := got[0].At
	for i, r := range got {
		assert.Equal(t, "staging-model", r.Model)
		assert.Equal(t, r.MaxTokens, r.MinTokens, "exactly the recorded output length")
		assert.True(t, r.IgnoreEOS)
		byLength[[2]int{len(r.Words), r.MaxTokens}]--
		// Arrival times: the stand-in sees request i when it was due: never much before (a replay that did
		// not pace its requests would send them all at once), and late by no more than a loaded machine's
		// scheduling makes it (under the race detector on two busy cores, 0.3-0.4 s by the 25th request).
		seen, due := r.At.Sub(first).Seconds(), wl[i].At.Seconds()
		assert.GreaterOrEqual(t, seen, due-0.1, "request %d came %.3f s before it was due", i, due-seen)
		assert.LessOrEqual(t, seen, due+1.5, "request %d came %.3f s after it was due", i, seen-due)
	}
	for k, n := range byLength {
		assert.Zero(t, n, "prompt/output lengths %v: sent as recorded", k)
	}
	assert.Contains(t, stdout.String(), "sent 25 of ")
	assert.Contains(t, stdout.String(), "requests to "+ts.URL)
	assert.Contains(t, stdout.String(), "25 answered, 0 failed")
}

func TestReplayBoundsAndFailures(t *testing.T) {
	srv := &replaytest.StandIn{Fail: func(n int) bool { return n%2 == 1 }}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var stdout, stderr bytes.Buffer
	// Only what is due within 2 s of the (20x faster) recording is sent.
	code := run([]string{"replay", spike, "--target", ts.URL, "--rate-scale", "20", "--max-duration", "2s", "--json"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	var rep replay.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep))
	assert.Positive(t, rep.Sent)
	assert.Positive(t, rep.NotSentBounds)
	assert.Equal(t, rep.Workload, rep.Sent+rep.NotSentBounds+rep.NotSentInFlight)
	assert.Equal(t, rep.Sent/2, rep.Failed, "every other request answered 503")
	assert.Equal(t, rep.Failed, rep.Errors["HTTP 503: overloaded"])
	assert.Len(t, srv.Requests(), rep.Sent)
}

func TestReplayMooncakeExportImport(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "spike.mooncake.jsonl")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"replay", spike, "--export", "mooncake", trace}, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "Mooncake, 512-token blocks")
	raw, err := os.ReadFile(trace)
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"hash_ids":[`)

	srv := &replaytest.StandIn{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	stdout.Reset()
	require.Equal(t, 0, run([]string{"replay", "--import", "mooncake", trace, "--model", "m", "--target", ts.URL, "--rate-scale", "50", "--max-requests", "5"}, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "5 answered")

	stderr.Reset()
	assert.Equal(t, 2, run([]string{"replay", "--import", "mooncake", trace, "--model", "m"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "no recorded latencies to calibrate on")
	stderr.Reset()
	assert.Equal(t, 2, run([]string{"replay", "--import", "mooncake", trace, "--target", ts.URL}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "needs one trace file and --model")
}

const twoReplicas = "../../internal/replay/testdata/spike-2-replicas.jsonl.gz"

// Simulated replay on the two-replica recording: predicted against recorded, and a sweep of fleet sizes,
// each against its golden file (the figures docs/replay.md quotes).
func TestReplaySimulatedGolden(t *testing.T) {
	cases := map[string][]string{
		"replay-recorded-fleet.txt": {"replay", twoReplicas},
		"replay-4-replicas.txt":     {"replay", twoReplicas, "--replicas", "4"},
		"replay-sweep.txt":          {"replay", twoReplicas, "--sweep", "replicas=2..5", "--slo", "ttft=1s,tpot=50ms"},
		"replay-sweep.json":         {"replay", twoReplicas, "--sweep", "replicas=2..5", "--json"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.Equal(t, 0, run(args, &stdout, &stderr), stderr.String())
			assert.Contains(t, stderr.String(), "calibrated on 851 requests and 2 x vllm")
			golden := filepath.Join("testdata", "golden", name)
			if *update {
				require.NoError(t, os.WriteFile(golden, stdout.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run go test ./cmd/servescope -update and review it")
			assert.Equal(t, string(want), stdout.String(), "output differs from %s (if intended, rerun with -update and review the diff)", golden)
		})
	}
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, run([]string{"replay", twoReplicas, "--sweep", "replicas=5..2"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "--sweep: want 1 <= FROM <= TO")
	assert.Equal(t, 2, run([]string{"replay", twoReplicas, "--sweep", "replicas=1..2", "--slo", "ttft=fast"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "--slo: want ttft=DURATION")
	assert.Equal(t, 1, run([]string{"replay", twoReplicas, "--router", "random"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), `router "random"`)
}

// Each model is a pool of its own: calibrated on its own requests, replayed on its own fleet. The
// two-replica recording with the second replica's requests renamed to another model gives two pools of one
// replica each.
func TestReplayEachModelIsAPool(t *testing.T) {
	out := bytes.TrimSpace(gunzip(t, twoReplicas))
	second := "" // the replica that sorts last
	for _, line := range bytes.Split(out, []byte("\n")) {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(line)
		require.NoError(t, err)
		for _, rs := range td.ResourceSpans().All() {
			if replica, _ := rs.Resource().Attributes().Get(schema.AttrServiceInstanceID); replica.Str() > second {
				second = replica.Str()
			}
		}
	}
	var renamed []byte
	for _, line := range bytes.Split(out, []byte("\n")) {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(line)
		require.NoError(t, err)
		for _, rs := range td.ResourceSpans().All() {
			if replica, _ := rs.Resource().Attributes().Get(schema.AttrServiceInstanceID); replica.Str() == second {
				for _, ss := range rs.ScopeSpans().All() {
					for _, span := range ss.Spans().All() {
						span.Attributes().PutStr(schema.AttrGenAIRequestModel, "other-model")
					}
				}
			}
		}
		b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
		require.NoError(t, err)
		renamed = append(append(renamed, b...), '\n')
	}
	path := filepath.Join(t.TempDir(), "two-models.jsonl")
	require.NoError(t, os.WriteFile(path, renamed, 0o644))

	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"replay", path}, &stdout, &stderr), stderr.String())
	assert.Equal(t, 2, strings.Count(stderr.String(), "calibrated on"), stderr.String())
	assert.Contains(t, stderr.String(), "other-model: calibrated on")
	assert.Contains(t, stderr.String(), "and 1 x vllm")
	assert.Contains(t, stdout.String(), "\nother-model\n")
	assert.Contains(t, stdout.String(), "\nQwen/Qwen2.5-32B-Instruct\n")

	stdout.Reset()
	require.Equal(t, 0, run([]string{"replay", path, "--sweep", "replicas=1..2", "--json"}, &stdout, &stderr), stderr.String())
	assert.Equal(t, 2, strings.Count(stdout.String(), `"model":`))
}
