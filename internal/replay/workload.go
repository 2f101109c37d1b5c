// Package replay turns explained request spans back into the workload that produced them (when each
// request arrived, its prompt and output length, its tenant, prompt family and the prefix the family
// shares, its model), writes and reads it in Dynamo's Mooncake trace format, and sends it to a real
// OpenAI-compatible endpoint with synthetic prompts of the recorded lengths. It never needs prompt text:
// no servescope span carries any.
package replay

import (
	"math"
	"sort"
	"time"

	"github.com/servescope/servescope/internal/spanfile"
)

// Request is one request of a workload.
type Request struct {
	// At is when it arrives, after the workload's first request.
	At     time.Duration
	ID     string
	Model  string
	Tenant string
	Family string
	// PromptTokens is the prompt's length, PrefixTokens how much of its start the family's prompts share
	// (what a prefix cache can serve), OutputTokens the answer's length.
	PromptTokens, PrefixTokens, OutputTokens int
	// Recorded is what the request met when it was recorded (NaN where not known); a replay compares with it.
	Recorded Latency
}

// Latency is what one request met, in seconds.
type Latency struct {
	TTFT, TPOT, E2E float64
	// Prefill is the time from its scheduling to its first token; CachedTokens the prompt tokens the prefix
	// cache served (NaN where the span did not say). Calibration reads them.
	Prefill, CachedTokens float64
}

// Workload is requests in arrival order.
type Workload []Request

// FromRequests reconstructs the workload of explained requests. A family's shared prefix is the median of
// the cached prompt tokens its requests reported (the prefix cache serves what repeats), never more than a
// request's own prompt; a request without a family shares nothing. Requests without a prompt or output
// length are left out, and counted.
func FromRequests(reqs []spanfile.Request) (w Workload, skipped int) {
	if len(reqs) == 0 {
		return nil, 0
	}
	sorted := append([]spanfile.Request(nil), reqs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Start.Before(sorted[j].Start) })
	prefix := familyPrefixes(sorted)
	first := sorted[0].Start
	for _, r := range sorted {
		if !(r.PromptTokens >= 1) || !(r.GenerationTokens >= 1) {
			skipped++
			continue
		}
		q := Request{
			At: r.Start.Sub(first), ID: r.ID, Model: r.Model, Tenant: r.Tenant, Family: r.Family,
			PromptTokens: int(r.PromptTokens), OutputTokens: int(r.GenerationTokens),
			Recorded: Latency{TTFT: r.TTFT, TPOT: r.TPOT, E2E: r.E2E, Prefill: r.Prefill, CachedTokens: r.CachedTokens},
		}
		if r.Family != "" {
			q.PrefixTokens = min(prefix[r.Family], q.PromptTokens)
		}
		w = append(w, q)
	}
	return w, skipped
}

func familyPrefixes(reqs []spanfile.Request) map[string]int {
	cached := map[string][]float64{}
	for _, r := range reqs {
		if r.Family != "" && !math.IsNaN(r.CachedTokens) {
			cached[r.Family] = append(cached[r.Family], r.CachedTokens)
		}
	}
	out := map[string]int{}
	for family, values := range cached {
		sort.Float64s(values)
		out[family] = int(values[len(values)/2])
	}
	return out
}

// Scaled is the workload with arrivals sped up by factor (2 sends the same requests in half the time).
func (w Workload) Scaled(factor float64) Workload {
	out := make(Workload, len(w))
	for i, r := range w {
		r.At = time.Duration(float64(r.At) / factor)
		out[i] = r
	}
	return out
}

// Duration is when the last request arrives.
func (w Workload) Duration() time.Duration {
	if len(w) == 0 {
		return 0
	}
	return w[len(w)-1].At
}
