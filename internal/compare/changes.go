package compare

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/servescope/servescope/internal/spanfile"
)

// Change is one difference between the periods worth a person's attention.
type Change struct {
	Model     string    `json:"model"`
	Dimension Dimension `json:"dimension,omitempty"`
	Key       string    `json:"key,omitempty"`
	// Metric is the latency whose p95 moved; "" for a group that is in one period only.
	Metric Metric `json:"metric,omitempty"`
	Before Float  `json:"p95_before"`
	After  Float  `json:"p95_after"`
	// Phase is the phase that moved most among the slowest requests, and Explained how many seconds of
	// the p95's change it accounts for ("" and null for TPOT, which is one phase).
	Phase     Metric `json:"phase,omitempty"`
	Explained Float  `json:"explained_seconds"`
	// Cause is the root cause whose share of the slow requests moved most, with its shares.
	Cause       string `json:"cause,omitempty"`
	CauseBefore Float  `json:"cause_share_before"`
	CauseAfter  Float  `json:"cause_share_after"`
	Sentence    string `json:"sentence"`

	weight float64
}

// A p95 that moves by less than both of these is noise, not a change: a tenth of its value, and 10 ms (2 ms
// for TPOT, whose values are tens of milliseconds).
const (
	minChangeSeconds     = 0.010
	minChangeSecondsTPOT = 0.002
	minChangeFraction    = 0.10
	// A cause's share of the slow requests is mentioned when it moved by at least this much.
	minCauseShift = 0.05
	// MinRanked is how many requests each period needs in a group before its p95 is compared: with fewer,
	// the p95 is the slowest request or two, and one long answer would read as a change.
	MinRanked = 20
)

// headline are the latencies a change is reported for: what users feel. The phases explain them.
var headline = []Metric{TTFT, TPOT, E2E}

// Changes lists what differs between two periods' summaries (made with the same dimension), the
// largest first: ranked by the seconds of p95 the moving phase explains (for TPOT, the p95's own change).
func Changes(before, after []Summary) []Change {
	type groupKey struct {
		model, key string
	}
	index := map[groupKey]Summary{}
	for _, s := range before {
		index[groupKey{s.Model, s.Key}] = s
	}
	var out []Change
	seen := map[groupKey]bool{}
	for _, a := range after {
		k := groupKey{a.Model, a.Key}
		seen[k] = true
		b, ok := index[k]
		if !ok {
			out = append(out, presence(a, "new in the second period"))
			continue
		}
		for _, m := range headline {
			if c, ok := change(b, a, m); ok {
				out = append(out, c)
			}
		}
	}
	for _, b := range before {
		if !seen[groupKey{b.Model, b.Key}] {
			out = append(out, presence(b, "not in the second period"))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].weight != out[j].weight {
			return out[i].weight > out[j].weight
		}
		return out[i].Sentence < out[j].Sentence
	})
	return out
}

func presence(s Summary, what string) Change {
	return Change{
		Model: s.Model, Dimension: s.Dimension, Key: s.Key,
		Before: Float(math.NaN()), After: Float(math.NaN()), Explained: Float(math.NaN()),
		CauseBefore: Float(math.NaN()), CauseAfter: Float(math.NaN()),
		Sentence: fmt.Sprintf("%s: %s (%d requests)", groupName(s), what, s.Requests),
	}
}

func change(b, a Summary, m Metric) (Change, bool) {
	before, after := float64(b.Latency[m].P95), float64(a.Latency[m].P95)
	if math.IsNaN(before) || math.IsNaN(after) || b.Latency[m].N < MinRanked || a.Latency[m].N < MinRanked {
		return Change{}, false
	}
	delta := after - before
	floor := minChangeSeconds
	if m == TPOT {
		floor = minChangeSecondsTPOT
	}
	if math.Abs(delta) < floor || math.Abs(delta) < minChangeFraction*before {
		return Change{}, false
	}
	c := Change{
		Model: a.Model, Dimension: a.Dimension, Key: a.Key, Metric: m,
		Before: Float(before), After: Float(after), Explained: Float(math.NaN()),
		CauseBefore: Float(math.NaN()), CauseAfter: Float(math.NaN()),
		weight: math.Abs(delta),
	}
	parts := []string{fmt.Sprintf("%s: p95 %s %s -> %s", groupName(a), metricLabel(m), Seconds(before), Seconds(after))}
	if phase, explained, ok := movingPhase(b, a, m, delta); ok {
		c.Phase, c.Explained, c.weight = phase, Float(explained), math.Abs(explained)
		parts = append(parts, fmt.Sprintf("%s explains %s of it", phase, Seconds(math.Abs(explained))))
	}
	if cause, sb, sa, ok := movingCause(b, a); ok {
		c.Cause, c.CauseBefore, c.CauseAfter = cause, Float(sb), Float(sa)
		parts = append(parts, fmt.Sprintf("%s %s -> %s of slow requests", cause, Percent(sb), Percent(sa)))
	}
	c.Sentence = strings.Join(parts, "; ")
	return c, true
}

// movingPhase finds the phase behind a change of a metric's p95. Among each period's requests at or above
// its p95 (the ones the p95 describes), each phase's mean moved by some amount; the phase that moved most
// in the change's direction is named, and its part of the change is its share of the phases' total move,
// applied to the p95's change (never more than all of it, when other phases moved the other way).
func movingPhase(b, a Summary, m Metric, delta float64) (Metric, float64, bool) {
	phases := phasesOf[m]
	if len(phases) == 0 {
		return "", 0, false
	}
	tb, ta := tail(b.requests, m, float64(b.Latency[m].P95)), tail(a.requests, m, float64(a.Latency[m].P95))
	best, bestMove, total := Metric(""), 0.0, 0.0
	for _, p := range phases {
		mb, ma := mean(tb, p), mean(ta, p)
		if math.IsNaN(mb) || math.IsNaN(ma) {
			continue
		}
		move := ma - mb
		total += move
		if move*delta > 0 && math.Abs(move) > math.Abs(bestMove) {
			best, bestMove = p, move
		}
	}
	if best == "" {
		return "", 0, false
	}
	share := 1.0
	if total*delta > 0 {
		share = min(1, bestMove/total)
	}
	return best, share * delta, true
}

func tail(rs []spanfile.Request, m Metric, p95 float64) []spanfile.Request {
	var out []spanfile.Request
	for _, r := range rs {
		if v := m.of(r); !math.IsNaN(v) && v >= p95 {
			out = append(out, r)
		}
	}
	return out
}

func mean(rs []spanfile.Request, m Metric) float64 {
	sum, n := 0.0, 0
	for _, r := range rs {
		if v := m.of(r); !math.IsNaN(v) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// movingCause is the root cause whose share of the slow requests moved most, when it moved enough to say.
func movingCause(b, a Summary) (string, float64, float64, bool) {
	causes := map[string]bool{}
	for c := range b.Causes {
		causes[c] = true
	}
	for c := range a.Causes {
		causes[c] = true
	}
	names := make([]string, 0, len(causes))
	for c := range causes {
		names = append(names, c)
	}
	sort.Strings(names) // ties go to the first name, the same on every run
	best, bestShift := "", 0.0
	for _, c := range names {
		if shift := a.CauseShare(c) - b.CauseShare(c); math.Abs(shift) > math.Abs(bestShift) {
			best, bestShift = c, shift
		}
	}
	if best == "" || math.Abs(bestShift) < minCauseShift {
		return "", 0, 0, false
	}
	return best, b.CauseShare(best), a.CauseShare(best), true
}

func groupName(s Summary) string {
	if s.Dimension == "" {
		return s.Model
	}
	return fmt.Sprintf("%s, %s %s", s.Model, s.Dimension, s.Key)
}

func metricLabel(m Metric) string {
	switch m {
	case TTFT, TPOT:
		return strings.ToUpper(string(m))
	case E2E:
		return "e2e"
	default:
		return string(m)
	}
}

// Seconds writes a duration for a person: milliseconds below a second, seconds above.
func Seconds(s float64) string {
	switch {
	case math.IsNaN(s) || math.IsInf(s, 0):
		return "-"
	case math.Abs(s) < 0.01:
		return fmt.Sprintf("%.1f ms", s*1000)
	case math.Abs(s) < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case math.Abs(s) < 100:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.0f s", s)
	}
}

// Percent writes a share as a whole percentage.
func Percent(share float64) string {
	if math.IsNaN(share) {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", share*100)
}
