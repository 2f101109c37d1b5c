// Package mlcmetrics reads the /metrics page of MLC LLM's server. MLC LLM does not write the Prometheus
// exposition format: its EngineMetrics.prometheus_text flattens the engine's metrics dictionary into one
// `key<TAB>value` line per number, with no HELP or TYPE lines, a `# /scope` comment before each nested
// dictionary, and labels spelled into the key without quotes (`decode_time_by_batch_size_mean{batch_size=1}`).
// Parse turns such a page into the form internal/promtext gives for an exposition page, so the shared
// engine scraper converts, checks and reports it like any other engine's.
package mlcmetrics

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/servescope/servescope/internal/promtext"
)

const (
	maxLineBytes = 1 << 20 // longer lines are rejected unread, as promtext does
	maxLabels    = 64      // per line; MLC writes one
	maxTextBytes = 120     // of a line quoted in an error
)

// Parse reads an MLC LLM metrics page. It never fails as a whole: a line it cannot read is counted and
// (the first promtext.MaxReportedErrors of them) described in the Result, and the other lines are kept.
// maxSamples bounds the samples kept as promtext.ParseLimit does (0: no bound).
//
// Families are named by the key without its labels. The engine's running totals (keys ending in `_sum`:
// engine_prefill_time_sum, prompt_tokens_sum, ...) and the per-batch-size counts (`_count`) only grow
// until the engine restarts or its metrics are reset, so they are counters; every other number (the
// throughputs, the last finished request's figures, mean step times) is a gauge. A line may separate key
// and value by tabs or spaces and may quote label values, so a page in the exposition's spelling of
// the same lines reads too.
func Parse(body []byte, maxSamples int) promtext.Result {
	p := parser{families: map[string]*promtext.Family{}}
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	lineNo := 0
	for len(body) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		p.line(lineNo, line)
		if maxSamples > 0 && p.res.Samples > maxSamples {
			p.res.OverLimit = true
			p.res.Samples += countSampleLines(body)
			break
		}
	}
	return p.res
}

type parser struct {
	res      promtext.Result
	families map[string]*promtext.Family
}

func (p *parser) line(lineNo int, raw []byte) {
	line := bytes.TrimSpace(raw)
	if len(line) == 0 || line[0] == '#' {
		return // the comments name the scope of the lines below; the keys already carry it
	}
	if len(line) > maxLineBytes {
		p.fail(lineNo, line, "line longer than "+strconv.Itoa(maxLineBytes)+" bytes")
		return
	}
	s, reason := parseSample(line)
	if reason != "" {
		p.fail(lineNo, line, reason)
		return
	}
	f := p.families[s.Name]
	if f == nil {
		f = &promtext.Family{Name: s.Name, Type: familyType(s.Name)}
		p.families[s.Name] = f
		p.res.Families = append(p.res.Families, f)
	}
	f.Samples = append(f.Samples, s)
	p.res.Samples++
}

func (p *parser) fail(lineNo int, line []byte, reason string) {
	p.res.ErrorCount++
	if len(p.res.Errors) >= promtext.MaxReportedErrors {
		return
	}
	text := line
	cut := len(text) > maxTextBytes
	if cut {
		text = text[:maxTextBytes]
		for len(text) > 0 && !utf8.Valid(text) { // never split a character
			text = text[:len(text)-1]
		}
	}
	t := strings.ToValidUTF8(string(text), "\uFFFD")
	if cut {
		t += "…"
	}
	p.res.Errors = append(p.res.Errors, promtext.LineError{Line: lineNo, Reason: reason, Text: t})
}

// familyType: the running totals are counters, the rest gauges (see Parse).
func familyType(name string) promtext.MetricType {
	if strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
		return promtext.TypeCounter
	}
	return promtext.TypeGauge
}

// parseSample reads `name{label=value,...}<space>value`; reason is "" when the line is a sample.
func parseSample(line []byte) (promtext.Sample, string) {
	var s promtext.Sample
	n := scanName(line)
	if n == 0 {
		return s, "no metric name"
	}
	s.Name = string(line[:n])
	rest := line[n:]
	if len(rest) > 0 && rest[0] == '{' {
		labels, after, reason := parseLabels(rest[1:])
		if reason != "" {
			return s, reason
		}
		s.Labels, rest = labels, after
	}
	if len(rest) == 0 {
		return s, "no value"
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return s, "unexpected character after the name"
	}
	value := bytes.TrimSpace(rest)
	if bytes.ContainsAny(value, " \t") {
		return s, "more than one value"
	}
	v, ok := parseValue(value)
	if !ok {
		return s, "invalid value " + strconv.Quote(cutToken(value))
	}
	s.Value = v
	return s, ""
}

// parseLabels reads the labels after `{` up to and including `}`.
func parseLabels(b []byte) ([]promtext.Label, []byte, string) {
	var labels []promtext.Label
	for {
		if len(b) > 0 && b[0] == '}' {
			return labels, b[1:], ""
		}
		if len(labels) == maxLabels {
			return nil, nil, "more than " + strconv.Itoa(maxLabels) + " labels"
		}
		n := scanLabelName(b)
		if n == 0 || n == len(b) || b[n] != '=' {
			return nil, nil, "malformed label"
		}
		name := string(b[:n])
		b = b[n+1:]
		var value string
		if len(b) > 0 && b[0] == '"' {
			v, rest, ok := quoted(b[1:])
			if !ok {
				return nil, nil, "unterminated label value"
			}
			value, b = v, rest
		} else {
			end := bytes.IndexAny(b, ",} \t")
			if end < 0 {
				return nil, nil, "unterminated labels"
			}
			value, b = string(b[:end]), b[end:]
		}
		if !utf8.ValidString(value) {
			return nil, nil, "label value is not UTF-8"
		}
		for _, l := range labels {
			if l.Name == name {
				return nil, nil, "label " + name + " repeated"
			}
		}
		labels = append(labels, promtext.Label{Name: name, Value: value})
		switch {
		case len(b) > 0 && b[0] == ',':
			b = b[1:]
		case len(b) > 0 && b[0] == '}':
		default:
			return nil, nil, "malformed labels"
		}
	}
}

// quoted reads a quoted label value after its opening quote, with the exposition's escapes.
func quoted(b []byte) (string, []byte, bool) {
	var out []byte
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			return string(out), b[i+1:], true
		case '\\':
			if i+1 == len(b) {
				return "", nil, false
			}
			i++
			switch b[i] {
			case 'n':
				out = append(out, '\n')
			default:
				out = append(out, b[i])
			}
		default:
			out = append(out, c)
		}
	}
	return "", nil, false
}

// parseValue reads a number as Python prints it: integers, floats in repr form (1e-05), nan and inf,
// and True or False for a flag.
func parseValue(b []byte) (float64, bool) {
	switch string(b) {
	case "True":
		return 1, true
	case "False":
		return 0, true
	}
	// ParseFloat also reads hexadecimal and underscores, which Python never prints for a float.
	for _, c := range b {
		if c == '_' || c == 'x' || c == 'X' || c == 'p' || c == 'P' {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

func scanName(b []byte) int {
	for i, c := range b {
		if c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return i
	}
	return len(b)
}

func scanLabelName(b []byte) int {
	for i, c := range b {
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return i
	}
	return len(b)
}

func cutToken(b []byte) string {
	if len(b) > 48 {
		b = b[:48]
	}
	return string(b)
}

// countSampleLines counts the lines that are neither blank nor comments, unparsed.
func countSampleLines(body []byte) int {
	n := 0
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 && line[0] != '#' {
			n++
		}
	}
	return n
}
