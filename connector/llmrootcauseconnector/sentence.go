package llmrootcauseconnector

import (
	"math"
	"strconv"
)

// The evidence sentence is written for every request, slow or not, so its figures are appended into one
// buffer the core keeps rather than formatted through fmt, which boxes each argument and parses its verb.

// appendFixed appends v with the given number of decimals (0 to 3), the digits strconv.AppendFloat(b, v,
// 'f', decimals, 64) writes. The figures here are small positive numbers of seconds, tokens and percents:
// for those the value scaled by 10^decimals is rounded as an integer, several times faster than strconv's
// exact decimal conversion. That rounding agrees with strconv's whenever the scaled value is below 1e9 (its
// floating-point error stays under 1e-7) and not within 1e-6 of a half, where strconv's exact rounding may
// go the other way; everything else (negative values and -0, huge ones, NaN, the infinities, near-halves)
// goes to strconv.
func appendFixed(b []byte, v float64, decimals int) []byte {
	scale := [...]float64{1, 10, 100, 1000}[decimals]
	scaled := v * scale
	if math.Signbit(v) || !(scaled < 1e9) || math.Abs(scaled-math.Floor(scaled)-0.5) < 1e-6 {
		return strconv.AppendFloat(b, v, 'f', decimals, 64)
	}
	n, unit := int64(math.Floor(scaled+0.5)), int64(scale)
	b = strconv.AppendInt(b, n/unit, 10)
	if decimals == 0 {
		return b
	}
	b = append(b, '.')
	frac := n % unit
	for unit /= 10; unit > 0; unit /= 10 {
		b = append(b, byte('0'+frac/unit))
		frac %= unit
	}
	return b
}

// appendSec appends v as seconds with two decimals, "?" when unknown.
func appendSec(b []byte, v float64) []byte {
	if math.IsNaN(v) {
		return append(b, '?')
	}
	return append(appendFixed(b, v, 2), " s"...)
}

// appendBreakdown appends the request's phases: "queue 0.01 s, prefill 0.10 s, decode 1.98 s, other 0.01 s
// of 2.10 s".
func appendBreakdown(b []byte, r *request) []byte {
	for _, p := range [...]struct {
		label string
		v     float64
	}{{"queue ", r.queue}, {", prefill ", r.prefill}, {", decode ", r.decode}, {", other ", r.other}, {" of ", r.e2e}} {
		b = append(b, p.label...)
		b = appendSec(b, p.v)
	}
	return b
}

// appendSlowFigure appends the figure that made the request slow: "ttft 1.23 s", "84 ms per token" or
// "e2e 9.80 s".
func appendSlowFigure(b []byte, r *request, reason string) []byte {
	switch reason {
	case slowTTFT:
		return appendSec(append(b, "ttft "...), r.ttft)
	case slowTPOT:
		return append(appendFixed(b, 1000*r.tpot, 0), " ms per token"...)
	}
	return appendSec(append(b, "e2e "...), r.e2e)
}

// num is a whole number as the sentences write it, "?" when unknown.
func num(v float64) string {
	if math.IsNaN(v) {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
