package spanfile

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/schema"
)

var epoch = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// batch is what llm_root_cause sends on: explained request spans (queue 0.5 s each, arrivals a second
// apart) and, beside them, a gateway span without an explanation.
func batch(first, n int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, "10.0.0.7:8000")
	rs.Resource().Attributes().PutStr(schema.AttrLLMEngineName, "vllm")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := first; i < first+n; i++ {
		s := spans.AppendEmpty()
		s.SetName("llm_request")
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(epoch.Add(time.Duration(i) * time.Second)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(epoch.Add(time.Duration(i)*time.Second + 3*time.Second)))
		a := s.Attributes()
		a.PutStr(schema.AttrGenAIRequestID, "cmpl-"+string(rune('a'+i)))
		a.PutStr(schema.AttrGenAIRequestModel, "llama")
		a.PutStr(schema.AttrLLMTenant, "acme")
		a.PutDouble(schema.AttrLLMLatencyQueue, 0.5)
		a.PutDouble(schema.AttrLLMLatencyE2e, 3)
		a.PutInt(schema.AttrLLMTokensPrompt, 1000)
		a.PutBool(schema.AttrLLMSlow, i%2 == 0)
		a.PutStr(schema.AttrLLMRootCause, schema.RootCauseQueueSaturation)
	}
	gw := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	gw.SetName("POST /v1/completions")
	return td
}

func jsonOf(t *testing.T, td ptrace.Traces) []byte {
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}

func protoOf(t *testing.T, td ptrace.Traces) []byte {
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}

func framed(messages ...[]byte) []byte {
	var out []byte
	for _, m := range messages {
		out = binary.BigEndian.AppendUint32(out, uint32(len(m)))
		out = append(out, m...)
	}
	return out
}

func zstdOf(t *testing.T, b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func gzipOf(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// Every way the file exporter (and logrotate after it) writes spans reads to the same requests.
func TestEveryFileExporterFormat(t *testing.T) {
	one, two := batch(0, 3), batch(3, 2)
	lines := append(append(jsonOf(t, one), '\n'), append(jsonOf(t, two), '\n')...)
	formats := map[string][]byte{
		"json lines":                    lines,
		"json lines, gzip (logrotate)":  gzipOf(t, lines),
		"json lines, native zstd":       zstdOf(t, lines),
		"proto":                         framed(protoOf(t, one), protoOf(t, two)),
		"proto, zstd per message":       framed(zstdOf(t, protoOf(t, one)), zstdOf(t, protoOf(t, two))),
		"json, zstd per message":        framed(zstdOf(t, jsonOf(t, one)), zstdOf(t, jsonOf(t, two))),
		"proto, native zstd":            zstdOf(t, framed(protoOf(t, one), protoOf(t, two))),
		"json lines, CRLF and a gap":    bytes.ReplaceAll(append([]byte("\n"), lines...), []byte("\n"), []byte("\r\n")),
		"json lines, no final newline":  bytes.TrimSuffix(lines, []byte("\n")),
		"json lines, gzip of two parts": append(gzipOf(t, append(jsonOf(t, one), '\n')), gzipOf(t, append(jsonOf(t, two), '\n'))...),
	}
	dir := t.TempDir()
	for name, content := range formats {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "spans")
			require.NoError(t, os.WriteFile(path, content, 0o644))
			f, err := Read(path)
			require.NoError(t, err)
			assert.Empty(t, f.Problems)
			assert.Equal(t, 2, f.Foreign, "the gateway spans are counted, not read")
			require.Len(t, f.Requests, 5)
			r := f.Requests[4]
			assert.Equal(t, "cmpl-e", r.ID)
			assert.Equal(t, "llama", r.Model)
			assert.Equal(t, "10.0.0.7:8000", r.Replica)
			assert.Equal(t, "vllm", r.Engine)
			assert.True(t, r.Slow)
			assert.Equal(t, schema.RootCauseQueueSaturation, r.Cause)
			assert.Equal(t, 0.5, r.Queue)
			assert.Equal(t, 1000.0, r.PromptTokens)
			assert.True(t, math.IsNaN(r.Decode), "a phase the span does not carry is unknown, not zero")
			assert.Equal(t, epoch.Add(4*time.Second), r.Start.UTC())
		})
	}
}

// A damaged message costs that message: the others are read, and the problem is said once per kind.
func TestDamageCostsOnlyTheDamagedMessage(t *testing.T) {
	good := jsonOf(t, batch(0, 2))
	var content []byte
	for range 3 {
		content = append(append(content, good...), '\n')
		content = append(content, []byte("{\"resourceSpans\": [ not json\n")...)
	}
	content = append(content, good[:len(good)/2]...) // the collector was writing this one
	path := filepath.Join(t.TempDir(), "spans.jsonl")
	require.NoError(t, os.WriteFile(path, content, 0o644))
	f, err := Read(path)
	require.NoError(t, err)
	assert.Len(t, f.Requests, 6)
	require.Len(t, f.Problems, 2, "one line per kind of problem: %v", f.Problems)
	assert.Contains(t, f.Problems[0], "line 2 is not an OTLP JSON traces message")
	assert.Contains(t, f.Problems[0], "(and 2 more like it)")
	assert.Contains(t, f.Problems[1], "line 7 (the last, cut short")

	// Length-prefixed: the last message cut short.
	msg := protoOf(t, batch(0, 2))
	framedContent := framed(msg, msg)
	require.NoError(t, os.WriteFile(path, framedContent[:len(framedContent)-10], 0o644))
	f, err = Read(path)
	require.NoError(t, err)
	assert.Len(t, f.Requests, 2)
	require.Len(t, f.Problems, 1)
	assert.Contains(t, f.Problems[0], "message 2 is cut short")
}

func TestParseSource(t *testing.T) {
	abs := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	first := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		arg      string
		path     string
		from, to time.Time
	}{
		{"spans.jsonl", "spans.jsonl", time.Time{}, time.Time{}},
		{"team@prod/spans.jsonl", "team@prod/spans.jsonl", time.Time{}, time.Time{}},
		{"spans.jsonl@..30m", "spans.jsonl", time.Time{}, abs},
		{"spans.jsonl@+30m..", "spans.jsonl", abs, time.Time{}},
		{"a@b.jsonl@10m..2026-12-01T10:30:00Z", "a@b.jsonl", first.Add(10 * time.Minute), abs},
	}
	for _, c := range cases {
		src, err := ParseSource(c.arg)
		require.NoError(t, err, c.arg)
		assert.Equal(t, c.path, src.Path, c.arg)
		var from, to time.Time
		if src.From.set {
			from = src.From.resolve(first).UTC()
		}
		if src.To.set {
			to = src.To.resolve(first).UTC()
		}
		assert.Equal(t, c.from, from, c.arg)
		assert.Equal(t, c.to, to, c.arg)
	}
	for _, bad := range []string{"spans.jsonl@yesterday..", "spans.jsonl@..-5m", "@..5m"} {
		_, err := ParseSource(bad)
		assert.Error(t, err, bad)
	}
}

// vLLM's request span has no cached-token count; the gateway's span of the same trace does (it reads the
// engine's usage), and the request takes it from there, never over the engine's own.
func TestCachedTokensFromTheGatewaysSpan(t *testing.T) {
	td := batch(0, 2)
	spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	trace := pcommon.TraceID([16]byte{1, 2, 3})
	spans.At(0).SetTraceID(trace)
	spans.At(1).SetTraceID(pcommon.TraceID([16]byte{4, 5, 6}))
	spans.At(1).Attributes().PutInt(schema.AttrLLMTokensCached, 10)
	for _, id := range []pcommon.TraceID{trace, spans.At(1).TraceID()} {
		gw := td.ResourceSpans().At(1).ScopeSpans().At(0).Spans().AppendEmpty()
		gw.SetTraceID(id)
		gw.Attributes().PutInt(schema.AttrGenAIUsageCachedTokens, 768)
	}
	path := filepath.Join(t.TempDir(), "spans.jsonl")
	require.NoError(t, os.WriteFile(path, jsonOf(t, td), 0o644))
	f, err := Read(path)
	require.NoError(t, err)
	require.Len(t, f.Requests, 2)
	assert.Equal(t, 768.0, f.Requests[0].CachedTokens)
	assert.Equal(t, 10.0, f.Requests[1].CachedTokens, "the engine's own count wins")
}
