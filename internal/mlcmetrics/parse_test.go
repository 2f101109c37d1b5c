package mlcmetrics

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/promtext"
)

// page is the receiver's page written from MLC LLM's source (see its testdata/README.md).
func page(t testing.TB) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "receiver", "mlcllmreceiver", "testdata", "metrics_v0.20.0.txt"))
	require.NoError(t, err)
	return body
}

func family(t *testing.T, r promtext.Result, name string) *promtext.Family {
	t.Helper()
	for _, f := range r.Families {
		if f.Name == name {
			return f
		}
	}
	require.Failf(t, "no family", "%s", name)
	return nil
}

// Every number line of the page is a sample, under the key without labels; the totals are counters.
func TestParsesThePage(t *testing.T) {
	body := page(t)
	r := Parse(body, 0)
	assert.Zero(t, r.ErrorCount, "%v", r.Errors)
	lines := 0
	for _, l := range strings.Split(string(body), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines++
		}
	}
	assert.Equal(t, lines, r.Samples)

	f := family(t, r, "engine_prefill_time_sum")
	assert.Equal(t, promtext.TypeCounter, f.Type)
	assert.Equal(t, []promtext.Sample{{Name: "engine_prefill_time_sum", Value: 12.84375}}, f.Samples)
	assert.Equal(t, promtext.TypeCounter, family(t, r, "prompt_tokens_sum").Type)
	assert.Equal(t, 48213.0, family(t, r, "prompt_tokens_sum").Samples[0].Value)

	g := family(t, r, "last_finished_request_ttft_s")
	assert.Equal(t, promtext.TypeGauge, g.Type)
	assert.Equal(t, 0.0412, g.Samples[0].Value)

	steps := family(t, r, "decode_time_by_batch_size_mean")
	assert.Equal(t, promtext.TypeGauge, steps.Type)
	require.Len(t, steps.Samples, 8)
	assert.Equal(t, []promtext.Label{{Name: "batch_size", Value: "1"}}, steps.Samples[0].Labels)
	assert.Equal(t, 0.0118, steps.Samples[0].Value)
	assert.Equal(t, promtext.TypeCounter, family(t, r, "decode_time_by_batch_size_count").Type)
}

// Speculative decoding's scopes nest one level deeper and repeat the key in the label's key
// (SpecDecodeMetrics::AsJSON names its entries accept_prob{step=0}, under the prefix spec_decode_accept_prob_).
func TestParsesSpeculativeDecodingLines(t *testing.T) {
	r := Parse([]byte("\n# /spec_decode/accept_prob\nspec_decode_accept_prob_accept_prob{step=0}\t1.0\n"+
		"spec_decode_accept_prob_accept_prob{step=1}\t0.625\n\n# /spec_decode/accept_rate\nspec_decode_accept_rate_accept_rate{step=1}\t0.625"), 0)
	assert.Zero(t, r.ErrorCount, "%v", r.Errors)
	f := family(t, r, "spec_decode_accept_prob_accept_prob")
	require.Len(t, f.Samples, 2)
	assert.Equal(t, []promtext.Label{{Name: "step", Value: "1"}}, f.Samples[1].Labels)
	assert.Equal(t, 0.625, f.Samples[1].Value)
}

func TestValues(t *testing.T) {
	for in, want := range map[string]float64{"3": 3, "-2.5": -2.5, "1e-05": 1e-05, "inf": math.Inf(1), "True": 1, "False": 0} {
		r := Parse([]byte("k\t"+in), 0)
		require.Zero(t, r.ErrorCount, in)
		assert.Equal(t, want, r.Families[0].Samples[0].Value, in)
	}
	r := Parse([]byte("k\tnan\n"), 0)
	assert.True(t, math.IsNaN(r.Families[0].Samples[0].Value), "NaN is read; the converter drops it and says so")
}

// The exposition's spelling of the same line reads too: spaces and quoted label values.
func TestPrometheusSpelling(t *testing.T) {
	r := Parse([]byte(`decode_time_by_batch_size_mean{batch_size="2",x="a \"b\""} 0.5`), 0)
	require.Zero(t, r.ErrorCount, "%v", r.Errors)
	assert.Equal(t, []promtext.Label{{Name: "batch_size", Value: "2"}, {Name: "x", Value: `a "b"`}}, r.Families[0].Samples[0].Labels)
}

// A bad line is skipped and described; the lines around it are kept.
func TestBadLinesAreSkipped(t *testing.T) {
	body := "a_sum\t1\n" + strings.Join([]string{
		"<html>", "<body><h1>Bad Gateway</h1></body>", "no_value", "two\t1 2", "x\tabc", "1abc\t2", "k{b=1\t3",
		"k{b=1,b=2}\t3", `k{b="1}` + "\t3", "k{=1}\t2", "hex\t0x10", "u{a=\xff}\t1", "c\xff\t1",
	}, "\n") + "\nz\t2"
	r := Parse([]byte(body), 0)
	assert.Equal(t, 13, r.ErrorCount)
	assert.Len(t, r.Errors, promtext.MaxReportedErrors)
	assert.Equal(t, 2, r.Errors[0].Line)
	require.Len(t, r.Families, 2)
	assert.Equal(t, "a_sum", r.Families[0].Name)
	assert.Equal(t, "z", r.Families[1].Name)
}

// An HTML page answered with 200 reads as no series at all, which the scraper reports as such.
func TestHTMLHasNoSeries(t *testing.T) {
	r := Parse([]byte("<html>\n<head><title>502 Bad Gateway</title></head>\n<body><h1>Bad Gateway</h1></body>\n</html>\n"), 0)
	assert.Empty(t, r.Families)
	assert.Equal(t, 4, r.ErrorCount)
}

func TestSampleLimit(t *testing.T) {
	body := page(t)
	all := Parse(body, 0)
	r := Parse(body, 5)
	assert.True(t, r.OverLimit)
	assert.Equal(t, all.Samples, r.Samples, "the whole page is counted")
	n := 0
	for _, f := range r.Families {
		n += len(f.Samples)
	}
	assert.Equal(t, 6, n, "parsing stopped one past the limit")
	assert.False(t, Parse(body, all.Samples).OverLimit)
}

// A long line is described in a bounded error, cut at a character boundary.
func TestLongLineErrorIsBounded(t *testing.T) {
	r := Parse([]byte(strings.Repeat("é", 500)+"\t1"), 0)
	require.Len(t, r.Errors, 1)
	assert.LessOrEqual(t, len(r.Errors[0].Text), maxTextBytes+len("…"))
	assert.True(t, strings.HasSuffix(r.Errors[0].Text, "…"))
	r = Parse([]byte("k\t"+strings.Repeat("1", maxLineBytes)), 0)
	assert.Equal(t, 1, r.ErrorCount)
}
