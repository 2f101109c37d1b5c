package promtext

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fixtures"
)

const (
	stormlogFile = "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"
	datadogVLLM  = "vllm/datadog_vllm_metrics.txt"
)

// fixtureFiles lists the real /metrics captures in the repository's testdata, as paths relative to it; none
// found fails the test.
func fixtureFiles(tb testing.TB) []string {
	tb.Helper()
	return fixtures.Glob(tb, "*/*.txt")
}

func readFixture(tb testing.TB, rel string) []byte {
	tb.Helper()
	return fixtures.Read(tb, rel)
}

// textLine is what a test can tell about a line by looking at it, without
// the parser: used to derive expectations from the captures themselves.
type textLine struct {
	no        int // 1-based
	text      string
	isSample  bool
	name      string // sample name, or the name of a HELP/TYPE line
	valueText string // last field of a sample line (captures carry no timestamps)
	typeWord  string // for TYPE lines
}

func scanLines(body []byte) []textLine {
	var out []textLine
	for i, raw := range strings.Split(string(body), "\n") {
		l := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if l == "" {
			continue
		}
		tl := textLine{no: i + 1, text: l}
		if strings.HasPrefix(l, "#") {
			f := strings.Fields(l)
			if len(f) >= 3 && (f[1] == "HELP" || f[1] == "TYPE") {
				tl.name = f[2]
				if f[1] == "TYPE" && len(f) >= 4 {
					tl.typeWord = f[3]
				}
			}
		} else {
			tl.isSample = true
			tl.name = l[:strings.IndexAny(l, "{ ")]
			f := strings.Fields(l)
			tl.valueText = f[len(f)-1]
		}
		out = append(out, tl)
	}
	return out
}

func sampleCount(r Result) int {
	n := 0
	for _, f := range r.Families {
		n += len(f.Samples)
	}
	return n
}

func family(r Result, name string) *Family {
	for _, f := range r.Families {
		if f.Name == name {
			return f
		}
	}
	return nil
}

func labelValue(s Sample, name string) (string, bool) {
	for _, l := range s.Labels {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}

// dump renders a result compactly so that table tests can state the whole
// expected outcome as text.
func dump(r Result) string {
	var b strings.Builder
	for _, f := range r.Families {
		fmt.Fprintf(&b, "%s %s", f.Type, f.Name)
		if f.Help != "" {
			fmt.Fprintf(&b, " help=%q", f.Help)
		}
		b.WriteByte('\n')
		for _, s := range f.Samples {
			b.WriteString("  " + s.Name)
			if len(s.Labels) > 0 {
				b.WriteByte('{')
				for i, l := range s.Labels {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%s=%q", l.Name, l.Value)
				}
				b.WriteByte('}')
			}
			b.WriteString(" " + strconv.FormatFloat(s.Value, 'g', -1, 64))
			if s.HasTimestamp {
				fmt.Fprintf(&b, " @%d", s.TimestampMs)
			}
			b.WriteByte('\n')
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "! line %d: %s\n", e.Line, e.Reason)
	}
	if r.ErrorCount != len(r.Errors) {
		fmt.Fprintf(&b, "! %d errors in all\n", r.ErrorCount)
	}
	return b.String()
}

// Every capture must parse completely; the expectations are derived from the
// text of each file rather than hard-coded, so new captures are covered too.
func TestParseFixtures(t *testing.T) {
	// Files that really contain invalid lines would be listed here with the
	// expected line number and reason. None of the current captures does.
	knownBad := map[string][]LineError{}

	typeOf := map[string]MetricType{
		"counter": TypeCounter, "gauge": TypeGauge, "histogram": TypeHistogram,
		"summary": TypeSummary, "untyped": TypeUnknown,
	}
	for _, rel := range fixtureFiles(t) {
		t.Run(rel, func(t *testing.T) {
			body := readFixture(t, rel)
			res := Parse(body)
			lines := scanLines(body)

			wantErrs := knownBad[filepath.ToSlash(rel)]
			require.Equal(t, len(wantErrs), res.ErrorCount, "errors: %v", res.Errors)
			for i, e := range wantErrs {
				assert.Equal(t, e.Line, res.Errors[i].Line)
				assert.Equal(t, e.Reason, res.Errors[i].Reason)
			}

			// Every sample line arrives, with the value written in the file.
			var want, got []string
			declaredType := map[string]string{}
			for _, l := range lines {
				if l.isSample {
					v, err := strconv.ParseFloat(l.valueText, 64)
					require.NoError(t, err, "line %d", l.no)
					want = append(want, l.name+" "+strconv.FormatFloat(v, 'g', -1, 64))
				} else if l.typeWord != "" {
					if _, seen := declaredType[l.name]; !seen {
						declaredType[l.name] = l.typeWord
					}
				}
			}
			for _, f := range res.Families {
				for _, s := range f.Samples {
					got = append(got, s.Name+" "+strconv.FormatFloat(s.Value, 'g', -1, 64))
				}
			}
			assert.ElementsMatch(t, want, got)
			assert.Equal(t, len(want)-len(wantErrs), sampleCount(res))

			// Every TYPE line leads to exactly one family of that type.
			names := map[string]bool{}
			for _, f := range res.Families {
				assert.False(t, names[f.Name], "family %q appears twice", f.Name)
				names[f.Name] = true
			}
			for name, word := range declaredType {
				f := family(res, name)
				if assert.NotNil(t, f, "family %q", name) {
					assert.Equal(t, typeOf[word], f.Type, "family %q", name)
				}
			}
		})
	}
}

func TestStormlogVLLM(t *testing.T) {
	body := readFixture(t, stormlogFile)
	res := Parse(body)
	require.Zero(t, res.ErrorCount, "errors: %v", res.Errors)
	lines := scanLines(body)

	waiting := family(res, "vllm:num_requests_waiting")
	require.NotNil(t, waiting)
	assert.Equal(t, TypeGauge, waiting.Type)
	assert.Equal(t, "Number of requests waiting to be processed.", waiting.Help)
	require.Len(t, waiting.Samples, 1)
	assert.Equal(t, 0.0, waiting.Samples[0].Value)
	assert.Equal(t, "vllm:num_requests_waiting", waiting.Samples[0].Name)
	// Labels stay in the order written.
	require.Len(t, waiting.Samples[0].Labels, 2)
	assert.Equal(t, Label{"engine", "0"}, waiting.Samples[0].Labels[0])
	assert.Equal(t, "model_name", waiting.Samples[0].Labels[1].Name)
	assert.Contains(t, waiting.Samples[0].Labels[1].Value, "Qwen2.5-0.5B-Instruct")

	prompt := family(res, "vllm:prompt_tokens_total")
	require.NotNil(t, prompt)
	assert.Equal(t, TypeCounter, prompt.Type)
	require.Len(t, prompt.Samples, 1)
	assert.Equal(t, 71680.0, prompt.Samples[0].Value)

	created := family(res, "vllm:prompt_tokens_created")
	require.NotNil(t, created, "the _created series must be a family of its own")
	assert.Equal(t, TypeGauge, created.Type)
	require.Len(t, created.Samples, 1)
	assert.Equal(t, "vllm:prompt_tokens_created", created.Samples[0].Name)
	assert.InDelta(t, 1.79e9, created.Samples[0].Value, 1e7)

	const hist = "vllm:e2e_request_latency_seconds"
	h := family(res, hist)
	require.NotNil(t, h)
	assert.Equal(t, TypeHistogram, h.Type)
	wantParts := map[string]int{}
	for _, l := range lines {
		if l.isSample && strings.HasPrefix(l.name, hist+"_") && l.name != hist+"_created" {
			wantParts[l.name]++
		}
	}
	require.Greater(t, wantParts[hist+"_bucket"], 1)
	gotParts := map[string]int{}
	var count, inf float64
	for _, s := range h.Samples {
		gotParts[s.Name]++
		switch s.Name {
		case hist + "_bucket":
			le, ok := labelValue(s, "le")
			require.True(t, ok, "bucket without le: %+v", s)
			if le == "+Inf" {
				inf = s.Value
			}
		case hist + "_count":
			count = s.Value
		}
	}
	assert.Equal(t, wantParts, gotParts)
	assert.Equal(t, 1, gotParts[hist+"_count"])
	assert.Equal(t, 1, gotParts[hist+"_sum"])
	assert.Equal(t, count, inf, "+Inf bucket must equal _count")
	assert.NotNil(t, family(res, hist+"_created"))

	// Order of first appearance: the first family is the first TYPE/HELP name.
	var first string
	for _, l := range lines {
		if l.name != "" {
			first = l.name
			break
		}
	}
	assert.Equal(t, first, res.Families[0].Name)
}

func TestNoTrailingNewline(t *testing.T) {
	body := readFixture(t, datadogVLLM)
	require.NotEqual(t, byte('\n'), body[len(body)-1], "capture is expected to lack a final newline")
	lines := scanLines(body)
	last := lines[len(lines)-1]
	require.True(t, last.isSample)

	res := Parse(body)
	require.Zero(t, res.ErrorCount, "errors: %v", res.Errors)
	wantValue, err := strconv.ParseFloat(last.valueText, 64)
	require.NoError(t, err)

	var found bool
	for _, f := range res.Families {
		for _, s := range f.Samples {
			if s.Name == last.name && s.Value == wantValue {
				if v, _ := labelValue(s, "model_name"); v != "" && strings.Contains(last.text, v) {
					found = true
				}
			}
		}
	}
	assert.True(t, found, "last line %q did not arrive", last.text)

	// The same body with a final newline and with CRLF endings reads the same.
	assert.Equal(t, res, Parse(append(bytes.Clone(body), '\n')))
	assert.Equal(t, res, Parse(bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))))
}

func TestTruncatedBody(t *testing.T) {
	body := readFixture(t, stormlogFile)
	lines := scanLines(body)

	// Byte offset of the start of each line.
	starts := []int{0}
	for i, c := range body {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	samplesBefore := func(lineNo int) int {
		n := 0
		for _, l := range lines {
			if l.isSample && l.no < lineNo {
				n++
			}
		}
		return n
	}

	// Cuts that leave an unreadable last line: inside the name, inside the
	// label set, inside a label value, right before the value, inside a
	// TYPE word.
	var cuts []int
	for _, l := range lines {
		start := starts[l.no-1]
		if l.isSample && strings.Contains(l.text, "{") {
			brace := strings.Index(l.text, "{")
			quote := strings.Index(l.text, `="`)
			cuts = append(cuts, start+3, start+brace+1, start+quote+3, start+strings.LastIndex(l.text, " "))
		}
		if l.typeWord != "" {
			cuts = append(cuts, start+len(l.text)-2)
		}
	}
	require.Greater(t, len(cuts), 100)
	step := len(cuts) / 40
	for i := 0; i < len(cuts); i += step {
		cut := cuts[i]
		res := Parse(body[:cut])
		lineNo := bytes.Count(body[:cut], []byte("\n")) + 1
		require.Equal(t, 1, res.ErrorCount, "cut at %d (line %d): %v", cut, lineNo, res.Errors)
		require.Equal(t, lineNo, res.Errors[0].Line)
		require.Equal(t, samplesBefore(lineNo), sampleCount(res), "cut at %d", cut)
	}

	// Any cut at all: no panic, at most the cut line is lost.
	for cut := 0; cut <= len(body); cut += 97 {
		res := Parse(body[:cut])
		lineNo := bytes.Count(body[:cut], []byte("\n")) + 1
		got := sampleCount(res)
		before := samplesBefore(lineNo)
		require.LessOrEqual(t, res.ErrorCount, 1, "cut at %d", cut)
		require.True(t, got == before || got == before+1, "cut at %d: %d samples, %d complete lines", cut, got, before)
	}
}

func TestSpecialValues(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		text string
		want float64
	}{
		{"NaN", nan},
		{"nan", nan},
		{"-nan", nan},
		{"+nan", nan},
		{"-NaN", nan},
		{"NAN", nan},
		{"nan(ind)", nan},
		{"-nan(ind)", nan},
		{"NaN(IND)", nan},
		{"nan(snan)", nan},
		{"nan(0x7ff8)", nan},
		{"1.#QNAN", nan},
		{"-1.#IND", nan},
		{"-1.#IND00", nan},
		{"1.#SNAN", nan},
		{"+Inf", math.Inf(1)},
		{"-Inf", math.Inf(-1)},
		{"Inf", math.Inf(1)},
		{"inf", math.Inf(1)},
		{"-inf", math.Inf(-1)},
		{"+Infinity", math.Inf(1)},
		{"1.#INF", math.Inf(1)},
		{"-1.#INF00", math.Inf(-1)},
		{"1e999", math.Inf(1)},
		{"-0", 0},
		{"0x1p-2", 0.25},
		{"1.5e+09", 1.5e9},
		{"71680.0", 71680},
		{".5", 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			body := "# TYPE before gauge\nbefore 1\nspecial{a=\"b\"} " + tc.text + "\nbroken abc\nafter 2\n"
			res := Parse([]byte(body))
			require.Equal(t, 1, res.ErrorCount, "errors: %v", res.Errors)
			assert.Equal(t, LineError{Line: 4, Reason: `invalid value "abc"`, Text: "broken abc"}, res.Errors[0])
			require.Len(t, res.Families, 3)
			assert.Equal(t, 1.0, family(res, "before").Samples[0].Value)
			assert.Equal(t, 2.0, family(res, "after").Samples[0].Value)
			got := family(res, "special").Samples[0].Value
			if math.IsNaN(tc.want) {
				assert.True(t, math.IsNaN(got), "got %v", got)
			} else {
				assert.Equal(t, tc.want, got)
			}
		})
	}

	for _, bad := range []string{"abc", "nanx", "nan(", "nan(a-b)", "1.#", "1.#QNANx", "--1", "1.0.0", "0x", "", "Infx", "1,5"} {
		t.Run("invalid "+bad, func(t *testing.T) {
			body := "before 1\nbad " + bad + "\nafter 2"
			res := Parse([]byte(body))
			require.Equal(t, 1, res.ErrorCount, "errors: %v", res.Errors)
			assert.Equal(t, 2, res.Errors[0].Line)
			if bad == "" {
				assert.Equal(t, "missing value", res.Errors[0].Reason)
			} else {
				assert.Equal(t, "invalid value "+strconv.Quote(bad), res.Errors[0].Reason)
			}
			assert.Equal(t, 2, sampleCount(res))
		})
	}
}

func TestHTMLErrorPage(t *testing.T) {
	page := `<html>
<head><title>502 Bad Gateway</title></head>

<body>
  <center><h1>502 Bad Gateway</h1></center>
  <hr><center>nginx/1.18.0 (Ubuntu)</center>

  <p>The upstream server returned an invalid response.</p>
  The upstream server returned an invalid response.
  Retry
  502 Bad Gateway
  <!-- a padding to disable MSIE and Chrome friendly error page -->
  <!-- a padding to disable MSIE and Chrome friendly error page -->
</body>
</html>
`
	nonEmpty := 0
	for _, l := range strings.Split(page, "\n") {
		if strings.TrimSpace(l) != "" {
			nonEmpty++
		}
	}
	require.Greater(t, nonEmpty, MaxReportedErrors)

	res := Parse([]byte(page))
	assert.Empty(t, res.Families)
	assert.Equal(t, nonEmpty, res.ErrorCount)
	require.Len(t, res.Errors, MaxReportedErrors)
	assert.Equal(t, LineError{Line: 1, Reason: `invalid metric name "<html>"`, Text: "<html>"}, res.Errors[0])
	assert.Equal(t, 4, res.Errors[2].Line, "empty lines are skipped, not reported")
	assert.Equal(t, `invalid value "upstream"`, res.Errors[6].Reason)
	assert.Equal(t, "missing value", res.Errors[7].Reason)
	for i := 1; i < len(res.Errors); i++ {
		assert.Greater(t, res.Errors[i].Line, res.Errors[i-1].Line)
	}
}

// TestLines states inputs and the complete expected result of small bodies.
func TestLines(t *testing.T) {
	cases := []struct {
		name string
		body string
		want string
	}{
		{
			name: "label escapes",
			body: `m{a="x\\y",b="q\"t",c="l1\nl2",d="\t",e=""} 1`,
			want: "unknown m\n  m{a=\"x\\\\y\",b=\"q\\\"t\",c=\"l1\\nl2\",d=\"\\\\t\",e=\"\"} 1\n",
		},
		{
			name: "help escapes",
			body: "# HELP m a\\\\b\\nc \\t\n# TYPE m gauge\nm 1",
			want: "gauge m help=\"a\\\\b\\nc \\\\t\"\n  m 1\n",
		},
		{
			name: "help without text declares a family",
			body: "# HELP m\n# TYPE n counter\n",
			want: "unknown m\ncounter n\n",
		},
		{
			name: "trailing comma and whitespace around tokens",
			body: "m{a=\"1\",} 1\nm { a = \"2\" , b=\"3\" , } 2 \t\n\tm{} 3\nm{}4",
			want: "unknown m\n  m{a=\"1\"} 1\n  m{a=\"2\",b=\"3\"} 2\n  m 3\n  m 4\n",
		},
		{
			name: "timestamps",
			body: "m 1 1700000000123\nm 2 -5\nm 3 0\nm 4 12.5\nm 5 1 2\nm 6",
			want: "unknown m\n  m 1 @1700000000123\n  m 2 @-5\n  m 3 @0\n  m 6\n" +
				"! line 4: invalid timestamp \"12.5\"\n! line 5: unexpected text after timestamp \"2\"\n",
		},
		{
			name: "exemplars are dropped",
			body: "# TYPE h histogram\nh_bucket{le=\"1\"} 2 # {trace_id=\"abc\"} 0.5 1.7e9\nh_count 2 100 # {a=\"b\"} 1",
			want: "histogram h\n  h_bucket{le=\"1\"} 2\n  h_count 2 @100\n",
		},
		{
			name: "duplicate TYPE and HELP re-use the family",
			body: "# HELP m first\n# TYPE m gauge\nm 1\n# HELP m second\n# TYPE m gauge\nm 2\n",
			want: "gauge m help=\"first\"\n  m 1\n  m 2\n",
		},
		{
			name: "TYPE after untyped samples types the family",
			body: "m 1\n# TYPE m counter\nm 2\n",
			want: "counter m\n  m 1\n  m 2\n",
		},
		{
			name: "conflicting TYPE keeps the first",
			body: "# TYPE m gauge\nm 1\n# TYPE m counter\nm 2\n# TYPE m untyped\n",
			want: "gauge m\n  m 1\n  m 2\n" +
				"! line 3: conflicting type \"counter\", family is already gauge\n" +
				"! line 5: conflicting type \"untyped\", family is already gauge\n",
		},
		{
			name: "unknown TYPE word",
			body: "# TYPE m gauges\nm_total 1\n# TYPE n\nn 2\n# TYPE o gauge extra\n",
			want: "unknown m\n  m_total 1\nunknown n\n  n 2\nunknown o\n" +
				"! line 1: unknown type \"gauges\"\n! line 3: missing type\n! line 5: unknown type \"gauge extra\"\n",
		},
		{
			name: "OpenMetrics and odd-case type words",
			body: "# TYPE a info\n# TYPE b stateset\n# TYPE c gaugehistogram\n# TYPE d unknown\n# TYPE e untyped\n# TYPE f SUMMARY\n# TYPE g Counter\n",
			want: "gauge a\ngauge b\nhistogram c\nunknown d\nunknown e\nsummary f\ncounter g\n",
		},
		{
			name: "comments",
			body: "#\n# some comment\n#HELPFUL hint\n# TYPEs are below\n  # HELP m indented\nm 1",
			want: "unknown m help=\"indented\"\n  m 1\n",
		},
		{
			name: "duplicate label name",
			body: "m{a=\"1\",b=\"2\",a=\"3\"} 1\nm{a=\"1\"} 2",
			want: "unknown m\n  m{a=\"1\"} 2\n! line 1: duplicate label \"a\"\n",
		},
		{
			name: "duplicate label name in a long label set",
			body: "m{" + manyLabels(30) + ",l7=\"x\"} 1\nm{" + manyLabels(30) + "} 2",
			want: "unknown m\n  m{" + manyLabels(30) + "} 2\n! line 1: duplicate label \"l7\"\n",
		},
		{
			name: "missing value",
			body: "m{a=\"1\"}\nm\nm{a=\"1\"}   \nm 1",
			want: "unknown m\n  m 1\n! line 1: missing value\n! line 2: missing value\n! line 3: missing value\n",
		},
		{
			name: "unterminated quote",
			body: "m{a=\"1} 1\nm{a=\"1\",b=\"2\\\"} 3\nm 1",
			want: "unknown m\n  m 1\n! line 1: unterminated label value\n! line 2: unterminated label value\n",
		},
		{
			name: "broken label sets",
			body: "m{a=\"1\" 1\nm{a=\"1\"\nm{1a=\"x\"} 1\nm{a \"x\"} 1\nm{a=x} 1\nm{a=\"1\"b=\"2\"} 1\nm{,} 1\nm{a=\"\xff\"} 1\nm{a=\"1\"} 5",
			want: "unknown m\n  m{a=\"1\"} 5\n" +
				"! line 1: expected \",\" or \"}\" after value of label \"a\"\n" +
				"! line 2: unterminated label set\n" +
				"! line 3: invalid label name \"1a=\\\"x\\\"}\"\n" +
				"! line 4: expected \"=\" after label \"a\"\n" +
				"! line 5: expected quoted value for label \"a\"\n" +
				"! line 6: expected \",\" or \"}\" after value of label \"a\"\n" +
				"! line 7: invalid label name \",}\"\n" +
				"! line 8: invalid UTF-8 in value of label \"a\"\n",
		},
		{
			name: "invalid metric names",
			body: "1m 1\nm-x 1\nm.x 1\n\"m\" 1\nok:name_1 1",
			want: "unknown ok:name_1\n  ok:name_1 1\n" +
				"! line 1: invalid metric name \"1m\"\n! line 2: invalid metric name \"m-x\"\n" +
				"! line 3: invalid metric name \"m.x\"\n! line 4: invalid metric name \"\\\"m\\\"\"\n",
		},
		{
			name: "quoted UTF-8 names",
			body: "# HELP \"name.with.dots\" dotted\n# TYPE \"name.with.dots\" counter\n" +
				"{\"name.with.dots\",label=\"v\"} 1\n{\"name.with.dots_total\"} 2\n{ \"name.with.dots\" , \"label.q\"=\"w\", } 3\n" +
				"{\"other\"} 4 5\n",
			want: "counter name.with.dots help=\"dotted\"\n" +
				"  name.with.dots{label=\"v\"} 1\n  name.with.dots_total 2\n  name.with.dots{label.q=\"w\"} 3\n" +
				"unknown other\n  other 4 @5\n",
		},
		{
			name: "broken quoted names",
			body: "{\"x\",\"y\"} 1\nm{\"x\"} 1\n{a=\"b\",\"x\"} 1\n{\"\"} 1\n{a=\"b\"} 1\n{\"x\n# TYPE \"\" gauge\n# TYPE \"x\"y gauge\n# HELP \"x",
			want: "! line 1: metric name given twice\n! line 2: metric name given twice\n" +
				"! line 3: quoted metric name must come first in the label set\n! line 4: empty quoted name\n" +
				"! line 5: missing metric name\n! line 6: unterminated quoted name\n! line 7: empty metric name\n" +
				"! line 8: invalid metric name \"\\\"x\\\"y\"\n! line 9: unterminated quoted name\n",
		},
		{
			name: "HELP and TYPE with bad names",
			body: "# HELP\n# TYPE 1x counter\n# HELP a-b text\n",
			want: "! line 1: missing metric name\n! line 2: invalid metric name \"1x\"\n! line 3: invalid metric name \"a-b\"\n",
		},
		{
			name: "CRLF, byte order mark and blank lines",
			body: "\xef\xbb\xbf# TYPE m gauge\r\n\r\n  \t \r\nm 1\r\n\r\n",
			want: "gauge m\n  m 1\n",
		},
		{
			name: "empty body",
			body: "",
			want: "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, dump(Parse([]byte(tc.body))))
		})
	}
}

func manyLabels(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("l%d=\"v%d\"", i, i))
	}
	return strings.Join(parts, ",")
}

// TestFamilies pins down which family each sample lands in.
func TestFamilies(t *testing.T) {
	cases := []struct {
		name string
		body string
		want string
	}{
		{
			name: "counter declared without _total",
			body: "# TYPE c counter\nc_total 1\nc_created 2\n",
			want: "counter c\n  c_total 1\n  c_created 2\n",
		},
		{
			name: "prometheus_client counter with separate _created gauge",
			body: "# TYPE c_total counter\nc_total 1\n# TYPE c_created gauge\nc_created 2\n",
			want: "counter c_total\n  c_total 1\ngauge c_created\n  c_created 2\n",
		},
		{
			name: "histogram parts, then its _created gauge",
			body: "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3\n# TYPE h_created gauge\nh_created 4\n",
			want: "histogram h\n  h_bucket{le=\"1\"} 1\n  h_bucket{le=\"+Inf\"} 2\n  h_count 2\n  h_sum 3\ngauge h_created\n  h_created 4\n",
		},
		{
			name: "exact name declared earlier wins over suffix of the current family",
			body: "# TYPE h_created gauge\n# TYPE h histogram\nh_count 1\nh_created 2\n",
			want: "gauge h_created\n  h_created 2\nhistogram h\n  h_count 1\n",
		},
		{
			name: "summary with quantiles",
			body: "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\n",
			want: "summary s\n  s{quantile=\"0.5\"} 1\n  s_sum 2\n  s_count 3\n",
		},
		{
			name: "OpenMetrics info, gaugehistogram suffixes",
			body: "# TYPE i info\ni_info{v=\"1\"} 1\n# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\ng_gcount 1\ng_gsum 2\n",
			want: "gauge i\n  i_info{v=\"1\"} 1\nhistogram g\n  g_bucket{le=\"+Inf\"} 1\n  g_gcount 1\n  g_gsum 2\n",
		},
		{
			name: "samples without TYPE get their own family, re-used later",
			body: "a 1\nb 2\na 3\nb_total 4\n",
			want: "unknown a\n  a 1\n  a 3\nunknown b\n  b 2\nunknown b_total\n  b_total 4\n",
		},
		{
			name: "unrelated sample after a declaration",
			body: "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nother 5\nh_count 1\nhx_count 2\nh_bucketx 3\n",
			want: "histogram h\n  h_bucket{le=\"+Inf\"} 1\n  h_count 1\nunknown other\n  other 5\nunknown hx_count\n  hx_count 2\nunknown h_bucketx\n  h_bucketx 3\n",
		},
		{
			name: "suffixes only match the most recent declaration",
			body: "# TYPE a counter\n# TYPE b gauge\na_total 1\n",
			want: "counter a\ngauge b\nunknown a_total\n  a_total 1\n",
		},
		{
			name: "repeated declaration block (Ray)",
			body: "# HELP r h\n# TYPE r gauge\nr{x=\"1\"} 1\n# HELP s h\n# TYPE s gauge\ns 1\n# HELP r h\n# TYPE r gauge\nr{x=\"2\"} 2\n",
			want: "gauge r help=\"h\"\n  r{x=\"1\"} 1\n  r{x=\"2\"} 2\ngauge s help=\"h\"\n  s 1\n",
		},
		{
			name: "colons in names",
			body: "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine=\"0\"} 0\n",
			want: "gauge vllm:num_requests_waiting\n  vllm:num_requests_waiting{engine=\"0\"} 0\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, dump(Parse([]byte(tc.body))))
		})
	}
}

func TestLimits(t *testing.T) {
	t.Run("1000 labels", func(t *testing.T) {
		body := "m{" + manyLabels(1000) + "} 1\nm{" + manyLabels(1001) + "} 2\nm 3\n"
		res := Parse([]byte(body))
		require.Equal(t, 1, res.ErrorCount)
		assert.Equal(t, 2, res.Errors[0].Line)
		assert.Equal(t, "too many labels (max 1000)", res.Errors[0].Reason)
		f := family(res, "m")
		require.Len(t, f.Samples, 2)
		assert.Len(t, f.Samples[0].Labels, 1000)
		assert.Equal(t, Label{"l999", "v999"}, f.Samples[0].Labels[999])
	})
	t.Run("line longer than 1 MiB", func(t *testing.T) {
		long := "m{a=\"" + strings.Repeat("x", 1<<20) + "\"} 1"
		body := "m 1\n" + long + "\nm 2\n"
		res := Parse([]byte(body))
		require.Equal(t, 1, res.ErrorCount)
		assert.Equal(t, 2, res.Errors[0].Line)
		assert.Equal(t, "line too long ("+strconv.Itoa(len(long))+" bytes)", res.Errors[0].Reason)
		assert.Equal(t, long[:120]+"…", res.Errors[0].Text)
		assert.Equal(t, 2, sampleCount(res))
	})
	t.Run("line of exactly 1 MiB", func(t *testing.T) {
		long := "m{a=\"" + strings.Repeat("x", 1<<20-len("m{a=\"\"} 1")) + "\"} 1"
		require.Len(t, long, 1<<20)
		res := Parse([]byte(long))
		require.Zero(t, res.ErrorCount, "errors: %v", res.Errors)
		assert.Equal(t, 1, sampleCount(res))
	})
}

func TestLineErrorText(t *testing.T) {
	// "é" is two bytes; placed so that byte 120 falls inside it.
	line := strings.Repeat("a", 119) + "é" + strings.Repeat("b", 50) + " x"
	res := Parse([]byte("m 1\n" + line + "\n"))
	require.Len(t, res.Errors, 1)
	e := res.Errors[0]
	assert.Equal(t, strings.Repeat("a", 119)+"…", e.Text)
	assert.True(t, utf8.ValidString(e.Text))
	assert.Equal(t, `invalid metric name "`+strings.Repeat("a", 48)+`…"`, e.Reason)
	assert.Equal(t, "line 2: "+e.Reason+": "+e.Text, e.Error())

	// Short lines are reported whole, without the trailing \r.
	res = Parse([]byte("m 1\r\nm abc\r\n"))
	require.Len(t, res.Errors, 1)
	assert.Equal(t, `line 2: invalid value "abc": m abc`, res.Errors[0].Error())

	var err error = e
	assert.ErrorContains(t, err, "line 2: ")
}

func TestMetricTypeString(t *testing.T) {
	for typ, want := range map[MetricType]string{
		TypeUnknown: "unknown", TypeCounter: "counter", TypeGauge: "gauge",
		TypeHistogram: "histogram", TypeSummary: "summary", MetricType(42): "MetricType(42)",
	} {
		assert.Equal(t, want, typ.String())
	}
}

// TestLargeBody parses a ~10 MB body of wide series, the size a big
// multi-model deployment can reach, in a single call.
func TestLargeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("large body skipped in -short mode")
	}
	var b bytes.Buffer
	b.WriteString("# HELP big:requests_total Requests.\n# TYPE big:requests_total counter\n")
	series := 0
	wide := "," + manyLabels(900)
	for b.Len() < 10<<20 {
		fmt.Fprintf(&b, "big:requests_total{model_name=\"/models/org--model-%d/snapshots/7ae557604adf67be50417f59c2c2f167def9a775\",engine=\"%d\"", series%37, series%8)
		for l := range 40 {
			fmt.Fprintf(&b, ",label_%02d=\"value-%d-%d\"", l, l, series%(l+3))
		}
		if series%1000 == 0 {
			b.WriteString(wide) // 942 labels
		}
		fmt.Fprintf(&b, ",series=\"%d\"} %d.5\n", series, series)
		series++
	}
	body := b.Bytes()
	res := Parse(body)
	require.Zero(t, res.ErrorCount, "errors: %v", res.Errors)
	require.Len(t, res.Families, 1)
	f := res.Families[0]
	require.Len(t, f.Samples, series)
	lastSample := f.Samples[series-1]
	assert.Equal(t, float64(series-1)+0.5, lastSample.Value)
	v, _ := labelValue(lastSample, "series")
	assert.Equal(t, strconv.Itoa(series-1), v)
	assert.Len(t, f.Samples[0].Labels, 2+40+900+1)
	assert.Len(t, f.Samples[1].Labels, 2+40+1)
}

func fuzzSeeds() []string {
	return []string{
		"",
		"\n\n",
		"m 1",
		"<html><body><h1>502 Bad Gateway</h1></body></html>\n",
		"<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n</html>\n",
		"m{a=\"x\\\\y\",b=\"q\\\"t\",c=\"l1\\nl2\"} 1 1700000000000\n",
		"# HELP m a\\\\b\\nc\n# TYPE m gauge\nm{a=\"1\",} 1\n",
		"# TYPE m gauge\n# TYPE m counter\nm 1\n# TYPE m gauges\n",
		"m{a=\"1\",a=\"2\"} 1\nm{a=\"1\"}\nm{a=\"1} 1\nm abc\nm -nan(ind)\nm +Inf\nm 1.#QNAN\n",
		"{\"name.with.dots\",label=\"v\"} 1\n{\"x\",\"y\"} 1\n# TYPE \"a.b\" counter\n{\"a.b_total\"} 1\n",
		"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 # {trace_id=\"a\"} 1\nh_count 1\nh_sum 1\n# TYPE h_created gauge\nh_created 1\n",
		"\xef\xbb\xbfm 1\r\nm{\xff=\"\xfe\"} 1\r\n",
		"vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"0.3\",model_name=\"/home/.cache/huggingf",
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	for _, rel := range fixtureFiles(f) {
		f.Add(readFixture(f, rel))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		res := Parse(body)
		if !bytes.Equal(orig, body) {
			t.Fatal("Parse modified its input")
		}
		if res.ErrorCount < len(res.Errors) {
			t.Fatalf("ErrorCount %d < len(Errors) %d", res.ErrorCount, len(res.Errors))
		}
		if len(res.Errors) > MaxReportedErrors {
			t.Fatalf("%d errors reported", len(res.Errors))
		}
		lines := bytes.Split(body, []byte("\n"))
		for _, e := range res.Errors {
			if e.Line < 1 || e.Line > len(lines) {
				t.Fatalf("error on line %d of %d", e.Line, len(lines))
			}
			if len(e.Text) > 120+len("…") || e.Reason == "" {
				t.Fatalf("bad error %+v", e)
			}
		}
		seen := map[string]bool{}
		for _, fam := range res.Families {
			if fam.Name == "" || seen[fam.Name] {
				t.Fatalf("family name %q empty or repeated", fam.Name)
			}
			seen[fam.Name] = true
			if len(fam.Samples) == 0 && !declaredIn(lines, fam.Name) {
				t.Fatalf("family %q has no samples and no HELP/TYPE line", fam.Name)
			}
			for _, s := range fam.Samples {
				if s.Name == "" {
					t.Fatalf("empty sample name in family %q", fam.Name)
				}
				if !s.HasTimestamp && s.TimestampMs != 0 {
					t.Fatalf("timestamp %d without HasTimestamp", s.TimestampMs)
				}
				names := map[string]bool{}
				for _, l := range s.Labels {
					if l.Name == "" || names[l.Name] {
						t.Fatalf("label name %q empty or repeated in %+v", l.Name, s)
					}
					names[l.Name] = true
				}
				if len(s.Labels) > 1000 {
					t.Fatalf("%d labels", len(s.Labels))
				}
			}
		}
		// Parsing is a pure function of the body.
		if again := Parse(body); !reflect.DeepEqual(dump(again), dump(res)) {
			t.Fatal("second parse differs")
		}
		// A limit either changes nothing or stops right after the first sample beyond it.
		const limit = 3
		limited := ParseLimit(body, limit)
		kept := 0
		for _, fam := range limited.Families {
			kept += len(fam.Samples)
		}
		switch {
		case !limited.OverLimit && dump(limited) != dump(res):
			t.Fatal("a limit the body stays under changed the result")
		case limited.OverLimit && (kept != limit+1 || res.Samples <= limit || limited.Samples < res.Samples):
			t.Fatalf("over the limit: kept %d, counted %d, the whole body has %d", kept, limited.Samples, res.Samples)
		}
	})
}

// declaredIn reports whether some comment line could have declared name.
func declaredIn(lines [][]byte, name string) bool {
	plain := !strings.ContainsAny(name, "\"\\\n")
	for _, l := range lines {
		l = bytes.TrimLeft(l, " \t\xef\xbb\xbf")
		if len(l) == 0 || l[0] != '#' {
			continue
		}
		if !bytes.Contains(l, []byte("HELP")) && !bytes.Contains(l, []byte("TYPE")) {
			continue
		}
		if !plain || bytes.Contains(l, []byte(name)) {
			return true
		}
	}
	return false
}

func TestParseLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("# HELP wide Many series.\n# TYPE wide gauge\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "wide{series=\"%d\"} %d\n", i, i)
		if i%100 == 0 {
			b.WriteString("# a comment\n\r\n\n")
		}
	}
	b.WriteString("wide{broken 1\n") // not a sample, but counted as one of the unread lines
	body := []byte(b.String())

	full := Parse(body)
	require.False(t, full.OverLimit)
	assert.Equal(t, 1000, full.Samples)
	assert.Equal(t, 1, full.ErrorCount)

	t.Run("over the limit stops parsing", func(t *testing.T) {
		res := ParseLimit(body, 10)
		assert.True(t, res.OverLimit)
		require.Len(t, res.Families, 1)
		assert.Len(t, res.Families[0].Samples, 11, "parsing stops at the first sample beyond the limit")
		assert.Equal(t, 1001, res.Samples, "the unread lines are counted, the broken one included")
		assert.Zero(t, res.ErrorCount, "the broken line was never parsed")
	})
	t.Run("at the limit", func(t *testing.T) {
		res := ParseLimit(body, 1000)
		assert.False(t, res.OverLimit)
		assert.Equal(t, dump(full), dump(res))
	})
	t.Run("zero is no limit", func(t *testing.T) {
		res := ParseLimit(body, 0)
		assert.False(t, res.OverLimit)
		assert.Equal(t, dump(full), dump(res))
	})
}

func BenchmarkParse(b *testing.B) {
	body := readFixture(b, stormlogFile)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		res := Parse(body)
		if res.ErrorCount != 0 {
			b.Fatal(res.Errors)
		}
	}
}
