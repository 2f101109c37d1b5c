package fleetsim

import (
	"bytes"
	"math"
	"sort"
	"strconv"
	"strings"
)

// numberStyle is how an exporter prints sample values: each engine's metrics library has its own habits,
// and receivers must read them all.
type numberStyle int

const (
	// stylePython is Python prometheus_client (vLLM, SGLang, TensorRT-LLM): repr of a float ("3.0",
	// "0.25"), switching to an exponent like Go does once the integer part has more than six digits.
	stylePython numberStyle = iota
	// styleCpp is llama.cpp: integers as integers, other values in their shortest form.
	styleCpp
	// styleDCGM is dcgm-exporter's integer fields; styleDCGMDouble its floating-point fields, always with
	// six decimals.
	styleDCGM
	styleDCGMDouble
)

func formatValue(v float64, style numberStyle) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	switch style {
	case styleCpp:
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case styleDCGM:
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	case styleDCGMDouble:
		return strconv.FormatFloat(v, 'f', 6, 64)
	}
	return pythonFloat(v)
}

// pythonFloat renders v as prometheus_client does: Python's repr (shortest round trip; fixed notation for
// decimal exponents from -4 to 15, always with a fraction), then, for positive values whose integer part
// has more than six digits, a mantissa with a single leading digit and an exponent written as "e+0" and
// the digit count less one.
func pythonFloat(v float64) string {
	var s string
	exp := 0
	if v != 0 {
		exp = int(math.Floor(math.Log10(math.Abs(v))))
		// Log10 can be off by one next to powers of ten; the 'e' format knows the exact exponent.
		e := strconv.FormatFloat(v, 'e', -1, 64)
		if i := strings.IndexByte(e, 'e'); i >= 0 {
			exp, _ = strconv.Atoi(e[i+1:])
		}
	}
	if v == 0 || (exp >= -4 && exp < 16) {
		s = strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
	} else {
		s = strconv.FormatFloat(v, 'e', -1, 64)
	}
	dot := strings.IndexByte(s, '.')
	if v > 0 && dot > 6 && !strings.ContainsRune(s, 'e') {
		mantissa := strings.TrimRight(s[:1]+"."+s[1:dot]+s[dot+1:], "0.")
		return mantissa + "e+0" + strconv.Itoa(dot-1)
	}
	return s
}

type label struct{ name, value string }

// expo writes one Prometheus text exposition.
type expo struct {
	b     bytes.Buffer
	style numberStyle
	sort  bool // write labels in alphabetical order, as prometheus_client does
}

func (e *expo) header(name, typ, help string) {
	e.b.WriteString("# HELP ")
	e.b.WriteString(name)
	e.b.WriteByte(' ')
	e.b.WriteString(help)
	e.b.WriteString("\n# TYPE ")
	e.b.WriteString(name)
	e.b.WriteByte(' ')
	e.b.WriteString(typ)
	e.b.WriteByte('\n')
}

func (e *expo) sample(name string, labels []label, v float64) {
	e.b.WriteString(name)
	if len(labels) > 0 {
		if e.sort {
			labels = append([]label(nil), labels...)
			sort.Slice(labels, func(i, j int) bool { return labels[i].name < labels[j].name })
		}
		e.b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				e.b.WriteByte(',')
			}
			e.b.WriteString(l.name)
			e.b.WriteString(`="`)
			e.b.WriteString(escapeLabel(l.value))
			e.b.WriteByte('"')
		}
		e.b.WriteByte('}')
	}
	e.b.WriteByte(' ')
	e.b.WriteString(formatValue(v, e.style))
	e.b.WriteByte('\n')
}

func escapeLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func with(labels []label, extra ...label) []label {
	return append(append(make([]label, 0, len(labels)+len(extra)), labels...), extra...)
}

func (e *expo) gauge(name, help string, labels []label, v float64) {
	e.header(name, "gauge", help)
	e.sample(name, labels, v)
}

// counter writes a counter the way prometheus_client does: the family named with its _total suffix and,
// when created is not NaN, a _created gauge family holding its creation time.
func (e *expo) counter(name, help string, labels []label, v, created float64) {
	e.header(name, "counter", help)
	e.sample(name, labels, v)
	e.created(strings.TrimSuffix(name, "_total"), help, [][]label{labels}, created)
}

func (e *expo) created(base, help string, series [][]label, created float64) {
	if math.IsNaN(created) {
		return
	}
	name := base + "_created"
	e.header(name, "gauge", help)
	for _, l := range series {
		e.sample(name, l, created)
	}
}

// histogramSeries writes the _bucket, _count and _sum samples of one series.
func (e *expo) histogramSeries(name string, labels []label, h *histogram) {
	cum := h.cumulative()
	for i, b := range h.bounds {
		e.sample(name+"_bucket", with(labels, label{"le", formatValue(b, e.style)}), float64(cum[i]))
	}
	e.sample(name+"_bucket", with(labels, label{"le", "+Inf"}), float64(cum[len(cum)-1]))
	e.sample(name+"_count", labels, float64(h.count))
	e.sample(name+"_sum", labels, h.sum)
}

func (e *expo) histogram(name, help string, labels []label, h *histogram, created float64) {
	if h == nil {
		return
	}
	e.header(name, "histogram", help)
	e.histogramSeries(name, labels, h)
	e.created(name, help, [][]label{labels}, created)
}
