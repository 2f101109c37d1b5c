package fleetsim

import (
	"fmt"
	"sort"
)

// Family is one kind of prompt a tenant sends: a prefix every prompt of the family shares (system prompt,
// tool definitions, few-shot examples), then a part of its own. The shared prefix is what prefix caching
// saves.
type Family struct {
	Name         string
	PrefixTokens int // shared by all prompts of the family
	SuffixMin    int // tokens after the prefix, drawn uniformly
	SuffixMax    int
	OutputMin    int // tokens generated, drawn log-uniformly
	OutputMax    int // also the request's max_tokens; a draw near it ends with finish reason length
	Weight       float64
}

// Tenant is one customer of the fleet.
type Tenant struct {
	Name     string
	Rate     float64 // requests per second per replica, Poisson
	Families []Family
}

// Scenario is a workload and the fault it injects. Times are fractions of the run's duration.
type Scenario struct {
	Name        string
	Description string
	// Cause names the fault's root cause; requests it slows down are expected to show it in the ground truth,
	// but each record's cause is measured from the request itself.
	Cause   Cause
	Tenants []Tenant
	// The fault is active from Start to End (fractions of the duration).
	Start, End float64
	// LoadFactor multiplies every tenant's rate for the whole run (0 means 1): a scenario on larger replicas
	// sends them proportionally more traffic.
	LoadFactor float64
	// RateFactor multiplies tenants' rates while the fault is active.
	RateFactor map[string]float64
	// Switch replaces a tenant's families while the fault is active (a batch job, a new product feature).
	Switch map[string][]Family
	// CacheBust names families whose prompts stop sharing their prefix from Start on, for good: a template
	// change put something per request (a timestamp, the user's name) ahead of the system prompt.
	CacheBust []string
	// ThrottleReplica has its GPUs' SM clock held at ThrottleClock (share of the maximum) while active.
	ThrottleReplica int
	ThrottleClock   float64
	// StragglerReplica has one tensor-parallel rank take StragglerFactor times longer per step while active.
	StragglerReplica int
	StragglerFactor  float64
	// MinTP is the smallest tensor-parallel size the scenario needs.
	MinTP int
}

// active reports whether the fault is on at virtual time t of a run lasting d seconds.
func (s *Scenario) active(t, d float64) bool { return t >= s.Start*d && t < s.End*d }

// defaultTenants is the baseline traffic. Per replica it keeps the GPU busy without queueing: about a third
// of the prefill capacity and a batch of 10 to 20 requests.
func defaultTenants() []Tenant {
	return []Tenant{
		{Name: "acme", Rate: 0.15, Families: []Family{
			// An agent with a long tool-use system prompt: almost all of each prompt is cached.
			{Name: "acme-agent", PrefixTokens: 20000, SuffixMin: 100, SuffixMax: 600, OutputMin: 60, OutputMax: 300, Weight: 1},
		}},
		{Name: "globex", Rate: 2.0, Families: []Family{
			{Name: "globex-support", PrefixTokens: 1200, SuffixMin: 50, SuffixMax: 400, OutputMin: 40, OutputMax: 400, Weight: 1},
		}},
		{Name: "initech", Rate: 0.4, Families: []Family{
			// Questions over a whole document: long prompts that share little.
			{Name: "initech-docqa", PrefixTokens: 400, SuffixMin: 2000, SuffixMax: 9000, OutputMin: 80, OutputMax: 300, Weight: 0.7},
			// Reports: short prompts, long answers.
			{Name: "initech-report", PrefixTokens: 500, SuffixMin: 100, SuffixMax: 300, OutputMin: 1200, OutputMax: 2500, Weight: 0.3},
		}},
		{Name: "umbrella", Rate: 0.6, Families: []Family{
			{Name: "umbrella-batch", PrefixTokens: 800, SuffixMin: 200, SuffixMax: 1200, OutputMin: 150, OutputMax: 600, Weight: 1},
		}},
	}
}

// ScenarioNames lists the scenarios by name, baseline first.
func ScenarioNames() []string {
	names := []string{"baseline"}
	var rest []string
	for n := range scenarios {
		if n != "baseline" {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}

var scenarios = map[string]func() Scenario{
	"baseline": func() Scenario {
		return Scenario{Description: "steady traffic from four tenants; nothing injected", Cause: CauseNone}
	},
	"traffic_spike": func() Scenario {
		return Scenario{
			Description: "every tenant sends 3.5x its rate for the middle half of the run: prefill demand exceeds capacity and the queues grow",
			Cause:       CauseQueueSaturation,
			RateFactor:  map[string]float64{"acme": 3.5, "globex": 3.5, "initech": 3.5, "umbrella": 3.5},
		}
	},
	"noisy_tenant": func() Scenario {
		return Scenario{
			Description: "tenant umbrella starts a bulk job (longer prompts, 6x its rate): the others queue behind its work",
			Cause:       CauseTenantContention,
			RateFactor:  map[string]float64{"umbrella": 6},
			Switch: map[string][]Family{"umbrella": {
				{Name: "umbrella-bulk", PrefixTokens: 800, SuffixMin: 1000, SuffixMax: 3000, OutputMin: 200, OutputMax: 600, Weight: 1},
			}},
		}
	},
	"prompt_family_change": func() Scenario {
		return Scenario{
			Description: "acme deploys a prompt template that puts a per-request header ahead of its 20k-token system prompt: from then on its prompts miss the prefix cache",
			Cause:       CausePrefixCacheMiss,
			CacheBust:   []string{"acme-agent"},
			End:         1,
		}
	},
	"kv_pressure": func() Scenario {
		return Scenario{
			Description: "initech starts rewriting long documents (12k-20k-token prompts, 600-1500-token answers): each holds a large share of the KV cache for half a minute, the cache fills, admissions stall and the scheduler preempts",
			Cause:       CauseKVCachePressure,
			Switch: map[string][]Family{"initech": {
				{Name: "initech-rewrite", PrefixTokens: 400, SuffixMin: 12000, SuffixMax: 20000, OutputMin: 600, OutputMax: 1500, Weight: 1},
			}},
			RateFactor: map[string]float64{"initech": 0.6},
			Start:      0.2,
		}
	},
	"gpu_throttling": func() Scenario {
		return Scenario{
			Description: "replica 0's GPUs overheat: thermal slowdown holds the SM clock at 30% and every step takes longer",
			Cause:       CauseGPUThrottling, ThrottleReplica: 0, ThrottleClock: 0.3,
		}
	},
	"tp_imbalance": func() Scenario {
		return Scenario{
			Description: "replicas run tensor-parallel on 2 GPUs with twice the traffic; on replica 0 rank 1 becomes a straggler (5x per step) and rank 0 waits for it in every all-reduce",
			Cause:       CauseCollectiveWait, StragglerReplica: 0, StragglerFactor: 5, MinTP: 2, LoadFactor: 2,
		}
	},
}

// LookupScenario returns a named scenario with the default tenants and a fault window over the middle of
// the run (from a third to five sixths of the duration, so the run shows before, during and after).
func LookupScenario(name string) (Scenario, error) {
	mk, ok := scenarios[name]
	if !ok {
		return Scenario{}, fmt.Errorf("unknown scenario %q (have %v)", name, ScenarioNames())
	}
	s := mk()
	s.Name = name
	s.Tenants = defaultTenants()
	if s.Start == 0 {
		s.Start = 1.0 / 3
	}
	if s.End == 0 {
		s.End = 5.0 / 6
	}
	if s.ThrottleClock == 0 {
		s.ThrottleReplica = -1
	}
	if s.StragglerFactor == 0 {
		s.StragglerReplica = -1
	}
	return s, nil
}
