package compare

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/servescope/servescope/internal/spanfile"
)

// minPeers is how many like requests a comparison wants before it trusts their median; with fewer, the
// likeness is widened (output size first, then prompt size, then the tenant or family asked for).
const minPeers = 5

// PhaseDiff is one phase of the request against its peers.
type PhaseDiff struct {
	Phase   Metric `json:"phase"`
	Value   Float  `json:"seconds"`
	PeerP50 Float  `json:"peer_p50"`
	PeerP95 Float  `json:"peer_p95"`
	Excess  Float  `json:"excess_seconds"` // Value - PeerP50
}

// RequestReport is one request against the requests like it.
type RequestReport struct {
	ID         string `json:"id"`
	Model      string `json:"model"`
	Tenant     string `json:"tenant"`
	Family     string `json:"family,omitempty"`
	Replica    string `json:"replica,omitempty"`
	Slow       bool   `json:"slow"`
	SlowReason string `json:"slow_reason,omitempty"`
	Cause      string `json:"root_cause"`
	Secondary  string `json:"secondary,omitempty"`
	Evidence   string `json:"evidence,omitempty"`

	PromptTokens     Float `json:"prompt_tokens"`
	GenerationTokens Float `json:"generation_tokens"`

	// Likeness says which requests were compared with ("same model, prompt 1024-2047 tokens, ..."),
	// Widened what was given up to find enough of them.
	Likeness string   `json:"likeness"`
	Widened  []string `json:"widened,omitempty"`
	Peers    int      `json:"peers"`

	Phases []PhaseDiff `json:"phases"`
	// Largest is the phase that took most over its peers' median, "" when none did.
	Largest  Metric `json:"largest,omitempty"`
	Sentence string `json:"sentence"`
}

// ErrNoSuchRequest is returned when no request has the id.
var ErrNoSuchRequest = errors.New("no explained request has this id")

// CompareRequest finds the request with the id (its gen_ai.request.id, or its span id) and compares each
// phase with the requests like it: same model, prompt and output size (power-of-two buckets), and, when
// alike is the tenant or family, the same tenant or family.
func CompareRequest(all []spanfile.Request, id string, alike Dimension) (RequestReport, error) {
	idx := -1
	for i, r := range all {
		if r.ID == id {
			idx = i
			break
		}
	}
	if idx < 0 {
		return RequestReport{}, ErrNoSuchRequest
	}
	req := all[idx]
	rules := []likeness{
		{"output", fmt.Sprintf("output %s tokens", bucketRange(req.GenerationTokens)), func(r spanfile.Request) bool {
			return bucket(r.GenerationTokens) == bucket(req.GenerationTokens)
		}},
		{"prompt", fmt.Sprintf("prompt %s tokens", bucketRange(req.PromptTokens)), func(r spanfile.Request) bool {
			return bucket(r.PromptTokens) == bucket(req.PromptTokens)
		}},
	}
	if alike == ByTenant || alike == ByFamily || alike == ByReplica {
		want := alike.of(req)
		rules = append(rules, likeness{string(alike), fmt.Sprintf("%s %s", alike, want), func(r spanfile.Request) bool { return alike.of(r) == want }})
	}
	// Widening gives up the rules in order: the least telling first.
	var peers []spanfile.Request
	var widened []string
	for dropped := 0; ; dropped++ {
		peers = peers[:0]
		for i, r := range all {
			if i == idx || r.Model != req.Model {
				continue
			}
			keep := true
			for _, rule := range rules[dropped:] {
				keep = keep && rule.match(r)
			}
			if keep {
				peers = append(peers, r)
			}
		}
		if len(peers) >= minPeers || dropped == len(rules) {
			parts := []string{"same model"}
			for _, rule := range rules[dropped:] {
				parts = append(parts, rule.says)
			}
			for _, rule := range rules[:dropped] {
				widened = append(widened, "any "+rule.name)
			}
			report := RequestReport{
				ID: req.ID, Model: req.Model, Tenant: req.Tenant, Family: req.Family, Replica: req.Replica,
				Slow: req.Slow, SlowReason: req.SlowReason, Cause: req.Cause, Secondary: req.Secondary, Evidence: req.Evidence,
				PromptTokens: Float(req.PromptTokens), GenerationTokens: Float(req.GenerationTokens),
				Likeness: strings.Join(parts, ", "), Widened: widened, Peers: len(peers),
			}
			report.compare(req, peers)
			return report, nil
		}
	}
}

type likeness struct {
	name, says string
	match      func(spanfile.Request) bool
}

func (rep *RequestReport) compare(req spanfile.Request, peers []spanfile.Request) {
	for _, p := range []Metric{Queue, Prefill, Decode, Other, TTFT, TPOT, E2E} {
		q := QuantilesOf(values(peers, p))
		d := PhaseDiff{Phase: p, Value: Float(p.of(req)), PeerP50: q.P50, PeerP95: q.P95, Excess: Float(math.NaN())}
		if d.Value.Known() && d.PeerP50.Known() {
			d.Excess = d.Value - d.PeerP50
		}
		rep.Phases = append(rep.Phases, d)
	}
	best := -1
	for i, d := range rep.Phases[:4] { // the phases that add up to e2e
		if d.Excess.Known() && d.Excess > 0 && (best < 0 || d.Excess > rep.Phases[best].Excess) {
			best = i
		}
	}
	var s strings.Builder
	switch {
	case len(peers) == 0:
		fmt.Fprintf(&s, "no other request of model %s to compare with", req.Model)
	case best < 0:
		fmt.Fprintf(&s, "no phase took longer than the median of the %d requests like it", len(peers))
	default:
		d := rep.Phases[best]
		rep.Largest = d.Phase
		fmt.Fprintf(&s, "%s took %s against %s for the %d requests like it (median; p95 %s): %s more",
			d.Phase, Seconds(float64(d.Value)), Seconds(float64(d.PeerP50)), len(peers), Seconds(float64(d.PeerP95)), Seconds(float64(d.Excess)))
	}
	if req.Slow {
		fmt.Fprintf(&s, "; slow (%s), root cause %s", orUnknown(req.SlowReason), req.Cause)
		if req.Secondary != "" {
			fmt.Fprintf(&s, " (then %s)", req.Secondary)
		}
	} else {
		s.WriteString("; not slow")
	}
	if req.Evidence != "" {
		fmt.Fprintf(&s, ": %s", req.Evidence)
	}
	rep.Sentence = s.String()
}

// bucket is the power-of-two size class of a token count: 0 for none, k for [2^(k-1), 2^k).
func bucket(tokens float64) int {
	if math.IsNaN(tokens) || tokens < 1 {
		return 0
	}
	return int(math.Floor(math.Log2(tokens))) + 1
}

func bucketRange(tokens float64) string {
	b := bucket(tokens)
	if b == 0 {
		return "0"
	}
	lo := int64(1) << (b - 1)
	return fmt.Sprintf("%d-%d", lo, 2*lo-1)
}

// SomeIDs are the first n ids in sorted order, for a message that shows what the ids look like when the
// one asked for is not there.
func SomeIDs(rs []spanfile.Request, n int) []string {
	ids := make([]string, 0, min(n, len(rs)))
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	return ids[:min(n, len(ids))]
}
