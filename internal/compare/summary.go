// Package compare puts explained requests side by side: two periods (per model, and per tenant, replica
// or prompt family on request), or one request against the requests like it. It works on what
// llm_root_cause wrote on each span, read by internal/spanfile, and renders text for people and JSON for
// machines.
package compare

import (
	"math"
	"sort"
	"strconv"

	"github.com/servescope/servescope/internal/spanfile"
)

// Dimension is what requests are grouped by beside their model.
type Dimension string

const (
	ByModel   Dimension = "model"
	ByTenant  Dimension = "tenant"
	ByReplica Dimension = "replica"
	ByFamily  Dimension = "family"
)

// Dimensions are the groupings a user may ask for, in the order the flag's help lists them.
var Dimensions = []Dimension{ByModel, ByTenant, ByReplica, ByFamily}

func (d Dimension) of(r spanfile.Request) string {
	switch d {
	case ByTenant:
		return r.Tenant
	case ByReplica:
		return orUnknown(r.Replica)
	case ByFamily:
		return orUnknown(r.Family)
	default:
		return r.Model
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Metric is one latency a request has.
type Metric string

const (
	Queue   Metric = "queue"
	Prefill Metric = "prefill"
	Decode  Metric = "decode"
	Other   Metric = "other"
	TTFT    Metric = "ttft"
	TPOT    Metric = "tpot"
	E2E     Metric = "e2e"
)

// Metrics are the latencies a summary shows, phases first.
var Metrics = []Metric{Queue, Prefill, Decode, Other, TTFT, TPOT, E2E}

// phasesOf are the phases that add up to a metric, for saying which one a change came from. TTFT is the
// queue and the prefill (plus the hop before the engine, which the breakdown folds into other with the
// detokenization after it, so other is left out there); e2e is all four.
var phasesOf = map[Metric][]Metric{
	TTFT: {Queue, Prefill},
	E2E:  {Queue, Prefill, Decode, Other},
}

func (m Metric) of(r spanfile.Request) float64 {
	switch m {
	case Queue:
		return r.Queue
	case Prefill:
		return r.Prefill
	case Decode:
		return r.Decode
	case Other:
		return r.Other
	case TTFT:
		return r.TTFT
	case TPOT:
		return r.TPOT
	default:
		return r.E2E
	}
}

// Quantiles of one metric over a group; N counts the requests that had it.
type Quantiles struct {
	N   int   `json:"n"`
	P50 Float `json:"p50"`
	P95 Float `json:"p95"`
	P99 Float `json:"p99"`
}

// Summary is one group of one period.
type Summary struct {
	Model string `json:"model"`
	// Dimension and Key name the group within the model ("" and "" for the model as a whole).
	Dimension Dimension `json:"dimension,omitempty"`
	Key       string    `json:"key,omitempty"`

	Requests  int   `json:"requests"`
	Slow      int   `json:"slow"`
	SlowShare Float `json:"slow_share"`
	// Causes counts the slow requests per root cause.
	Causes map[string]int `json:"causes"`
	// CachedShare is cached prompt tokens over prompt tokens, over the requests that said both; NaN
	// (null in JSON) when none did.
	CachedShare Float `json:"cached_share"`

	Latency map[Metric]Quantiles `json:"latency"`

	requests []spanfile.Request
}

// CauseShare is a cause's share of the group's slow requests (0 when none was slow).
func (s Summary) CauseShare(cause string) float64 {
	if s.Slow == 0 {
		return 0
	}
	return float64(s.Causes[cause]) / float64(s.Slow)
}

// Summarize groups the requests per model and, with a dimension other than the model, per model and key.
// Groups come sorted by model, then by request count (busiest first), then by key.
func Summarize(requests []spanfile.Request, by Dimension) []Summary {
	type groupKey struct{ model, key string }
	groups := map[groupKey][]spanfile.Request{}
	for _, r := range requests {
		k := groupKey{model: r.Model}
		if by != "" && by != ByModel {
			k.key = by.of(r)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Summary, 0, len(groups))
	for k, rs := range groups {
		s := summarize(rs)
		s.Model = k.model
		if by != ByModel {
			s.Dimension, s.Key = by, k.key
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Model != out[j].Model {
			return out[i].Model < out[j].Model
		}
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func summarize(rs []spanfile.Request) Summary {
	s := Summary{Requests: len(rs), Causes: map[string]int{}, Latency: map[Metric]Quantiles{}, requests: rs}
	var cached, prompt float64
	for _, r := range rs {
		if r.Slow {
			s.Slow++
			s.Causes[r.Cause]++
		}
		if !math.IsNaN(r.CachedTokens) && !math.IsNaN(r.PromptTokens) {
			cached += r.CachedTokens
			prompt += r.PromptTokens
		}
	}
	s.SlowShare = Float(float64(s.Slow) / float64(len(rs)))
	s.CachedShare = Float(math.NaN())
	if prompt > 0 {
		s.CachedShare = Float(cached / prompt)
	}
	for _, m := range Metrics {
		s.Latency[m] = QuantilesOf(values(rs, m))
	}
	return s
}

func values(rs []spanfile.Request, m Metric) []float64 {
	out := make([]float64, 0, len(rs))
	for _, r := range rs {
		if v := m.of(r); !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	sort.Float64s(out)
	return out
}

// QuantilesOf gives the p50, p95 and p99 of sorted values (ascending), each a value that was observed.
func QuantilesOf(sorted []float64) Quantiles {
	return Quantiles{N: len(sorted), P50: Float(quantile(sorted, 0.50)), P95: Float(quantile(sorted, 0.95)), P99: Float(quantile(sorted, 0.99))}
}

// quantile is the nearest-rank quantile of sorted values (a value some request really had, as an SRE
// reading "p95 = 2.9 s" expects), NaN when there are none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

// Float is a figure that may be unknown: NaN in Go, null in JSON, written with six significant digits so
// that the output reads the same on every machine.
type Float float64

// Known says whether the figure is a number.
func (f Float) Known() bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }

// MarshalJSON writes null for an unknown figure (encoding/json refuses NaN).
func (f Float) MarshalJSON() ([]byte, error) {
	if !f.Known() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', 6, 64), nil
}
