package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/spanfile"
)

var update = flag.Bool("update", false, "rewrite the golden outputs under testdata/golden from the recorded files")

const (
	baseline = "testdata/baseline.jsonl.gz"
	spike    = "testdata/spike.jsonl.gz"
	// A request of the spike that queued behind the spike's backlog (queue_saturation in the recording).
	queuedRequest = "cmpl-8abadcb54d446cd68a9710c774b6ce6b-0"
)

// Each command's whole output on the recorded files, text and JSON, against its golden file.
func TestCompareGolden(t *testing.T) {
	cases := map[string][]string{
		"periods.txt":         {"compare", baseline, spike},
		"periods.json":        {"compare", "--json", baseline, spike},
		"windows-tenant.txt":  {"compare", "--by", "tenant", spike + "@..20s", spike + "@+20s..50s"},
		"windows-tenant.json": {"compare", spike + "@..20s", spike + "@+20s..50s", "--by", "tenant", "--json"},
		"request.txt":         {"compare", "--request", queuedRequest, spike},
		"request-tenant.json": {"compare", "--request", queuedRequest, "--alike", "tenant", "--json", spike},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.Equal(t, 0, run(args, &stdout, &stderr), "stderr: %s", stderr.String())
			assert.Empty(t, stderr.String())
			golden := filepath.Join("testdata", "golden", name)
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, stdout.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run go test ./cmd/servescope -update and review it")
			assert.Equal(t, string(want), stdout.String(), "output differs from %s (if intended, rerun with -update and review the diff)", golden)
		})
	}
}

// The figures the golden files show, checked against what the recording is known to hold: the spike's
// requests queued, so its p95 TTFT grew by seconds and the queue explains most of it.
func TestCompareNamesTheSpikesQueue(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"compare", baseline, spike}, &stdout, &stderr), stderr.String())
	lines := strings.Split(stdout.String(), "\n")
	var first string
	for i, l := range lines {
		if strings.HasPrefix(l, "Biggest changes:") && i+1 < len(lines) {
			first = lines[i+1]
		}
	}
	assert.Contains(t, first, "p95 TTFT")
	assert.Contains(t, first, "queue explains")
	assert.Contains(t, first, "queue_saturation 0% ->")
}

// Bad input: a clear message naming the file and what is wrong, exit status 1 (2 for usage), never a
// panic; a damaged line costs that line only.
func TestCompareBadInput(t *testing.T) {
	dir := t.TempDir()
	spikeLines := gunzip(t, spike)

	truncated := filepath.Join(dir, "truncated.jsonl")
	cut := spikeLines[:len(spikeLines)-1]            // drop the final newline,
	cut = cut[:bytes.LastIndexByte(cut, '\n')+1+200] // and keep 200 bytes of the last line
	require.NoError(t, os.WriteFile(truncated, cut, 0o644))

	foreign := filepath.Join(dir, "foreign.jsonl")
	require.NoError(t, os.WriteFile(foreign, []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"GET /"}]}]}]}`+"\n"), 0o644))
	garbage := filepath.Join(dir, "garbage.bin")
	require.NoError(t, os.WriteFile(garbage, bytes.Repeat([]byte{0xff, 0x00, 0x13}, 100), 0o644))
	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	html := filepath.Join(dir, "error.html")
	require.NoError(t, os.WriteFile(html, []byte("<html><body>502 Bad Gateway</body></html>\n"), 0o644))

	cases := []struct {
		name   string
		args   []string
		status int
		says   []string
	}{
		{"window with no spans", []string{"compare", spike + "@+10h..", baseline}, 1, []string{spike, "no request arrived in the window", "the file's requests arrived from"}},
		{"only foreign spans", []string{"compare", foreign, spike}, 1, []string{foreign, "1 spans, none explained by llm_root_cause"}},
		{"not a span file", []string{"compare", garbage, spike}, 1, []string{garbage, "neither OTLP JSON lines nor length-prefixed"}},
		{"empty file", []string{"compare", empty, spike}, 1, []string{empty, "empty"}},
		{"an HTML page", []string{"compare", html, spike}, 1, []string{html, "neither OTLP JSON lines nor length-prefixed"}},
		{"missing file", []string{"compare", filepath.Join(dir, "nope.jsonl"), spike}, 1, []string{"nope.jsonl", "no such file"}},
		{"bad window", []string{"compare", spike + "@yesterday..", spike}, 1, []string{"window start", "RFC 3339"}},
		{"unknown request", []string{"compare", "--request", "cmpl-nope", spike}, 1, []string{`no explained request has id "cmpl-nope"`, "ids look like: cmpl-"}},
		{"one file", []string{"compare", spike}, 2, []string{"want BEFORE and AFTER, got 1"}},
		{"bad grouping", []string{"compare", "--by", "gpu", baseline, spike}, 2, []string{"--by", "want one of model, tenant, replica, family"}},
		{"alike alone", []string{"compare", "--alike", "tenant", baseline, spike}, 2, []string{"--alike goes with --request"}},
		{"unknown command", []string{"replayy"}, 2, []string{`unknown command "replayy"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, c.status, run(c.args, &stdout, &stderr))
			for _, s := range c.says {
				assert.Contains(t, stderr.String(), s)
			}
			assert.Empty(t, stdout.String())
		})
	}

	// The cut line is said once, and every request before it is still compared.
	var full, partial, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"compare", "--json", baseline, spike}, &full, &stderr))
	require.Equal(t, 0, run([]string{"compare", "--json", baseline, truncated}, &partial, &stderr), stderr.String())
	assert.Contains(t, partial.String(), "(the last, cut short: was the collector still writing?)")
	assert.Equal(t, 1, strings.Count(partial.String(), "cut short"))
	lastLine := filepath.Join(dir, "last.jsonl")
	require.NoError(t, os.WriteFile(lastLine, spikeLines[bytes.LastIndexByte(spikeLines[:len(spikeLines)-1], '\n')+1:], 0o644))
	last, err := spanfile.Read(lastLine)
	require.NoError(t, err)
	var whole, damaged struct {
		After struct {
			Requests int `json:"requests"`
		} `json:"after"`
	}
	require.NoError(t, json.Unmarshal(full.Bytes(), &whole))
	require.NoError(t, json.Unmarshal(partial.Bytes(), &damaged))
	require.NotEmpty(t, last.Requests)
	assert.Equal(t, whole.After.Requests-len(last.Requests), damaged.After.Requests, "only the cut line's requests are missing")
}

func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return b
}
