package llmnormalizeprocessor

import (
	"maps"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/schema"
)

// rule is everything needed to rewrite one vendor family, resolved once from the schema at start.
type rule struct {
	metric  *schema.Metric
	id      int     // the canonical metric's index in the schema, for per-batch bookkeeping without maps
	rank    int     // position among the canonical metric's sources: lower is newer and wins
	scale   float64 // multiply values by this to get the canonical unit
	renames [][2]string
	// replicated are (label, value to keep) pairs: series with another value repeat the kept one's state.
	replicated [][2]string
	// set are constant attributes added to every data point.
	set [][2]string
	// fromLabel is the label whose number is the value (an info metric's configuration fact), "" for none.
	fromLabel string
}

// family is how one wire family maps: whole onto one canonical metric, or split by the values of its
// selecting labels (Triton's nv_trt_llm_request_metrics{request_type="waiting"|"active"|...}) onto several.
type family struct {
	whole *rule
	split *split
	// fromLabel are the canonical gauges read from the family's labels, beside whatever the family maps to.
	fromLabel []*rule
}

// split routes each series of a family by the values of the selecting labels.
type split struct {
	labels []string         // the selecting labels, sorted; dropped from the canonical points
	rules  map[string]*rule // by the labels' values, joined by selectSep
	order  []*rule          // the rules in schema order, so that output order does not depend on map order
}

const selectSep = "\xff"

// ruleFor returns the rule that selects a series with these attributes, or nil.
func (sp *split) ruleFor(attrs pcommon.Map) *rule {
	var key strings.Builder
	for i, label := range sp.labels {
		v, ok := attrs.Get(label)
		if !ok {
			return nil
		}
		if i > 0 {
			key.WriteString(selectSep)
		}
		key.WriteString(v.AsString())
	}
	return sp.rules[key.String()]
}

// engineRules maps every accepted wire spelling of an engine's families to how it maps.
type engineRules map[string]*family

// ruleSet holds the rules per engine and what identifies an engine from a metric name.
type ruleSet struct {
	byEngine map[string]engineRules
	prefixes []enginePrefix // longest first, so ray_vllm_ wins over a shorter prefix
	metrics  int            // number of canonical metrics
	ratios   []derivedRatio // gauges computed from two counters (schema ratio_of)
}

// derivedRatio is a canonical gauge computed as numerator / denominator of two canonical counters.
type derivedRatio struct {
	id, numeratorID, denominatorID int
	gauge                          canonical.Gauge
}

type enginePrefix struct{ prefix, engine string }

func buildRules(s *schema.Schema, only []string) *ruleSet {
	enabled := map[string]bool{}
	for _, e := range only {
		enabled[e] = true
	}
	rs := &ruleSet{byEngine: map[string]engineRules{}, metrics: len(s.Metrics)}
	index := map[string]int{}
	for id, m := range s.Metrics {
		index[m.Name] = id
	}
	for id, m := range s.Metrics {
		if len(m.RatioOf) == 2 { // validated at schema load: a gauge of two counters
			builder, _ := canonical.Lookup(m.Name)
			gauge, ok := builder.(canonical.Gauge)
			if !ok {
				panic("the canonical builders do not match the schema: run make generate") // a build defect
			}
			rs.ratios = append(rs.ratios, derivedRatio{id: id, numeratorID: index[m.RatioOf[0]], denominatorID: index[m.RatioOf[1]], gauge: gauge})
		}
	}
	for _, name := range s.EngineNames {
		if len(only) > 0 && !enabled[name] {
			continue
		}
		e := s.Engines[name]
		rs.byEngine[name] = engineRules{}
		for _, p := range append(append([]string{}, e.MetricPrefixes...), e.AliasPrefixes...) {
			if p != "" { // an unprefixed spelling identifies no engine: it maps only when the resource says the engine
				rs.prefixes = append(rs.prefixes, enginePrefix{p, name})
			}
		}
	}
	for i := 1; i < len(rs.prefixes); i++ { // insertion sort by prefix length, descending; the list is tiny
		for j := i; j > 0 && len(rs.prefixes[j].prefix) > len(rs.prefixes[j-1].prefix); j-- {
			rs.prefixes[j], rs.prefixes[j-1] = rs.prefixes[j-1], rs.prefixes[j]
		}
	}
	for id, m := range s.Metrics {
		for engineName, sources := range m.Sources {
			rules := rs.byEngine[engineName]
			if rules == nil {
				continue
			}
			e := s.Engines[engineName]
			for rank, src := range sources {
				scale, _ := src.Scale(m.Unit) // validated at schema load
				r := &rule{
					metric: m, id: id, rank: rank, scale: scale, renames: renames(e.LabelRenames, src.Labels),
					replicated: renames(e.ReplicatedLabels, nil), set: renames(src.SetAttributes, nil),
					fromLabel: src.FromLabel,
				}
				for _, spelling := range e.Spellings(src.Name) {
					rules.add(spelling, src.Select, r)
				}
			}
		}
	}
	// An engine that embeds another (Ray Serve and the vLLM replicas it runs) also maps the embedded
	// engine's families, its own rules first.
	for _, name := range s.EngineNames {
		rules := rs.byEngine[name]
		if rules == nil {
			continue
		}
		for _, embedded := range s.Engines[name].Embeds {
			for spelling, r := range rs.byEngine[embedded] {
				if _, own := rules[spelling]; !own {
					rules[spelling] = r
				}
			}
		}
	}
	// Counters also arrive without their `_total` suffix (OTLP push, or a Prometheus receiver that trims
	// suffixes); accept that spelling where it does not collide with another family.
	for _, rules := range rs.byEngine {
		for name, f := range rules {
			if f.whole != nil && f.whole.metric.Instrument != schema.Counter {
				continue
			}
			if trimmed, ok := strings.CutSuffix(name, "_total"); ok {
				if _, taken := rules[trimmed]; !taken {
					rules[trimmed] = f
				}
			}
		}
	}
	for _, rules := range rs.byEngine {
		for _, f := range rules {
			if f.split != nil {
				slices.SortStableFunc(f.split.order, func(a, b *rule) int { return a.id - b.id })
			}
		}
	}
	return rs
}

// add records that spelling maps, whole or for the series with the selected label values, by r.
func (er engineRules) add(spelling string, selected map[string]string, r *rule) {
	f := er[spelling]
	if f == nil {
		f = &family{}
		er[spelling] = f
	}
	if r.fromLabel != "" {
		f.fromLabel = append(f.fromLabel, r)
		return
	}
	if len(selected) == 0 {
		f.whole = r
		return
	}
	if f.split == nil {
		f.split = &split{labels: slices.Sorted(maps.Keys(selected)), rules: map[string]*rule{}}
	}
	values := make([]string, len(f.split.labels))
	for i, label := range f.split.labels {
		values[i] = selected[label]
	}
	f.split.rules[strings.Join(values, selectSep)] = r
	f.split.order = append(f.split.order, r)
}

// renames merges label maps into sorted (from, to) pairs; the source level wins.
func renames(engineLevel, sourceLevel map[string]string) [][2]string {
	merged := map[string]string{}
	for from, to := range engineLevel {
		merged[from] = to
	}
	for from, to := range sourceLevel {
		merged[from] = to
	}
	out := make([][2]string, 0, len(merged))
	for _, from := range slices.Sorted(maps.Keys(merged)) {
		out = append(out, [2]string{from, merged[from]})
	}
	return out
}

// detect names the engine whose prefix the metric name carries, or "".
func (rs *ruleSet) detect(metricName string) string {
	for _, p := range rs.prefixes {
		if strings.HasPrefix(metricName, p.prefix) {
			return p.engine
		}
	}
	return ""
}
