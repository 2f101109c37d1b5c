// Package schema is the only Go view of the canonical schema in schema/canonical.yaml: it parses and
// validates the file once, and builds the lookup tables the processor and the docs generator use.
// Canonical names used in Go code come from the generated constants in names.go, never from literals.
package schema

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	canonical "github.com/servescope/servescope/schema"
)

// Instrument is the kind of a canonical metric.
type Instrument string

const (
	Counter   Instrument = "counter"
	Gauge     Instrument = "gauge"
	Histogram Instrument = "histogram"
)

// Schema is the parsed canonical schema.
type Schema struct {
	Version    int                `yaml:"version"`
	Attributes []Attribute        `yaml:"attributes"`
	Engines    map[string]*Engine `yaml:"engines"`
	Metrics    []*Metric          `yaml:"metrics"`

	// EngineNames lists the engines in a stable (sorted) order.
	EngineNames []string `yaml:"-"`
}

// Attribute is a canonical attribute.
type Attribute struct {
	Name        string `yaml:"name"`
	Level       string `yaml:"level"` // resource, datapoint, or span (an attribute of a request span)
	Description string `yaml:"description"`
	// Enum lists every value the attribute may take, where the set is closed (root causes, detectors, ...):
	// the Go constants and the docs are generated from it, so code and docs never spell a value of their own.
	Enum []EnumValue `yaml:"enum"`
}

// EnumValue is one value of an enumerated attribute.
type EnumValue struct {
	Value       string `yaml:"value"`
	Description string `yaml:"description"`
	// Severity is an incident detector's severity, a value of llm.incident.severity (only on detectors).
	Severity string `yaml:"severity"`
}

// Engine is what the schema knows about one engine's naming.
type Engine struct {
	Description string `yaml:"description"`
	// Receiver is the servescope receiver that scrapes the engine ("" when a stock receiver does).
	Receiver       string            `yaml:"receiver"`
	MetricPrefixes []string          `yaml:"metric_prefixes"`
	AliasPrefixes  []string          `yaml:"alias_prefixes"`
	LabelRenames   map[string]string `yaml:"label_renames"`
	// ReplicatedLabels name labels whose series repeat the same state once per value (each tensor-parallel
	// rank reporting the scheduler's queue): only the series with the given value is kept.
	ReplicatedLabels map[string]string `yaml:"replicated_labels"`
	// Embeds names engines whose families also appear in this one's scrapes (Ray Serve LLM re-exports
	// vLLM's); their rules apply too, after this engine's own.
	Embeds      []string      `yaml:"embeds"`
	Passthrough []Passthrough `yaml:"passthrough"`
	// SpanStages map the names of the engine's per-request stage spans (children of its request span) to the
	// request phase they measure (queue, prefill, decode), for engines whose request span carries no
	// latency attributes of its own.
	SpanStages map[string]string `yaml:"span_stages"`
	// SpanTree describes an engine whose request is a tree of spans: the request span, thread spans under
	// it, the stage slices under those. Nil for engines whose request is one span.
	SpanTree *SpanTree `yaml:"span_tree"`
}

// SpanTree is how an engine's request tree is read.
type SpanTree struct {
	// RequestName matches the names of the engine's request spans; its first group, when it matches, names
	// the request's side of a prefill/decode disaggregation ("prefill" or "decode").
	RequestName string `yaml:"request_name"`
	// ThreadAttribute marks the thread spans between a request span and its slices (never requests).
	ThreadAttribute string `yaml:"thread_attribute"`
	// RankAttributes order the ranks whose thread spans describe the same request, most significant first:
	// of one thread label, the lowest rank's slices are read.
	RankAttributes []string `yaml:"rank_attributes"`
	// PartnerAttributes join the two sides of a disaggregated request in one trace: the first of them the
	// request spans carry, equal on both.
	PartnerAttributes []string `yaml:"partner_attributes"`

	requestName *regexp.Regexp
}

// Match tells whether name is one of the engine's request spans, and which side of a disaggregated request
// it is ("" when unified).
func (t *SpanTree) Match(name string) (bool, string) {
	m := t.requestName.FindStringSubmatch(name)
	if m == nil {
		return false, ""
	}
	if len(m) > 1 {
		return true, m[1]
	}
	return true, ""
}

// Passthrough names vendor families that deliberately have no canonical home, and why.
type Passthrough struct {
	Match  string `yaml:"match"` // a family name, or a prefix when it ends in '_' or ':'
	Reason string `yaml:"reason"`
}

// Metric is one canonical metric.
type Metric struct {
	Name        string     `yaml:"name"`
	Instrument  Instrument `yaml:"instrument"`
	Unit        string     `yaml:"unit"`
	Description string     `yaml:"description"`
	Attributes  []string   `yaml:"attributes"`
	ProducedBy  string     `yaml:"produced_by"`
	// RatioOf names the counters (numerator, denominator) this gauge is derived from where an engine maps
	// both and not the gauge itself.
	RatioOf []string             `yaml:"ratio_of"`
	Sources map[string][]*Source `yaml:"sources"`
}

// Source maps one vendor family onto a canonical metric.
type Source struct {
	Name     string            `yaml:"name"`
	Unit     string            `yaml:"unit"`
	Versions string            `yaml:"versions"`
	Labels   map[string]string `yaml:"labels"`
	// SetAttributes are constant attributes the canonical data points get (DCGM's SM clock is
	// nvidia.gpu.clock.frequency with nvidia.gpu.clock.type=sm).
	SetAttributes map[string]string `yaml:"set_attributes"`
	// Select takes only the family's series whose labels have these values, and drops those labels: a family
	// that carries one quantity per label value (Triton's nv_trt_llm_request_metrics{request_type="waiting"})
	// feeds several canonical metrics, one source per value. Series no source selects stay unmapped.
	Select map[string]string `yaml:"select"`
	// FromLabel reads the canonical gauge's value from this label of each series instead of the series'
	// value: an info metric (value 1) that carries a configuration fact in a label (vLLM's
	// cache_config_info{block_size="16"}). The canonical points keep only the labels the engine renames to
	// canonical attributes; a series whose label is not a finite number gives no point.
	FromLabel string `yaml:"from_label"`
	Note      string `yaml:"note"`
}

// Display is the source as docs/schema.md writes it: the family, with its selected label values.
func (src *Source) Display() string {
	if src.FromLabel != "" {
		return src.Name + " (label " + src.FromLabel + ")"
	}
	if len(src.Select) == 0 {
		return src.Name
	}
	parts := make([]string, 0, len(src.Select))
	for _, k := range slices.Sorted(maps.Keys(src.Select)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, src.Select[k]))
	}
	return src.Name + "{" + strings.Join(parts, ",") + "}"
}

var (
	loadOnce   sync.Once
	loaded     *Schema
	loadErr    error
	metricName = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$`)
	enumValue  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// Default returns the embedded canonical schema, parsed and validated once per process.
func Default() (*Schema, error) {
	loadOnce.Do(func() { loaded, loadErr = Parse(canonical.YAML) })
	return loaded, loadErr
}

// Parse parses and validates a schema document. Unknown keys are errors, so a typo in the schema cannot
// silently drop a mapping.
func Parse(doc []byte) (*Schema, error) {
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	s := &Schema{}
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("canonical schema: %w", err)
	}
	for name := range s.Engines {
		s.EngineNames = append(s.EngineNames, name)
	}
	sort.Strings(s.EngineNames)
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("canonical schema: %w", err)
	}
	return s, nil
}

func (s *Schema) validate() error {
	var errs []error
	attrs := map[string]bool{}
	for _, a := range s.Attributes {
		if attrs[a.Name] {
			errs = append(errs, fmt.Errorf("attribute %q declared twice", a.Name))
		}
		attrs[a.Name] = true
		if a.Level != "resource" && a.Level != "datapoint" && a.Level != "span" {
			errs = append(errs, fmt.Errorf("attribute %q: level must be resource, datapoint or span, not %q", a.Name, a.Level))
		}
	}
	errs = append(errs, s.validateEnums()...)
	for name, e := range s.Engines {
		for from, to := range e.LabelRenames {
			if !attrs[to] {
				errs = append(errs, fmt.Errorf("engine %s: label %q renamed to undeclared attribute %q", name, from, to))
			}
		}
		for _, embedded := range e.Embeds {
			if s.Engines[embedded] == nil {
				errs = append(errs, fmt.Errorf("engine %s: embeds unknown engine %q", name, embedded))
			}
		}
		// An engine whose families carry no prefix (NVIDIA NIM) is recognised only by the llm.engine.name its
		// receiver stamps, so it needs a receiver; any other engine needs a prefix to be recognised by.
		if len(e.MetricPrefixes) == 0 && e.Receiver == "" {
			errs = append(errs, fmt.Errorf("engine %s: no metric_prefixes and no receiver to name it", name))
		}
		if t := e.SpanTree; t != nil {
			re, err := regexp.Compile(t.RequestName)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("engine %s: span_tree.request_name: %w", name, err))
			case t.RequestName == "" || t.ThreadAttribute == "":
				errs = append(errs, fmt.Errorf("engine %s: span_tree needs request_name and thread_attribute", name))
			default:
				t.requestName = re
			}
		}
		for stage, phase := range e.SpanStages {
			if phase != PhaseQueue && phase != PhasePrefill && phase != PhaseDecode {
				errs = append(errs, fmt.Errorf("engine %s: span stage %q maps to %q, not queue, prefill or decode", name, stage, phase))
			}
		}
	}
	seenMetric := map[string]bool{}
	seenSource := map[string]string{}
	// How each family is selected on, per engine: "" when mapped whole, else its sorted select labels. A
	// family is either mapped whole or split, and all its selecting sources select on the same labels, so
	// that every series lands in at most one canonical metric.
	selectedOn := map[string]string{}
	for _, m := range s.Metrics {
		if seenMetric[m.Name] {
			errs = append(errs, fmt.Errorf("metric %q declared twice", m.Name))
		}
		seenMetric[m.Name] = true
		if !metricName.MatchString(m.Name) {
			errs = append(errs, fmt.Errorf("metric %q: not a dotted lower-case name", m.Name))
		}
		switch m.Instrument {
		case Counter, Gauge, Histogram:
		default:
			errs = append(errs, fmt.Errorf("metric %q: unknown instrument %q", m.Name, m.Instrument))
		}
		if m.Unit == "" || m.Description == "" {
			errs = append(errs, fmt.Errorf("metric %q: unit and description are required", m.Name))
		}
		for _, a := range m.Attributes {
			if !attrs[a] {
				errs = append(errs, fmt.Errorf("metric %q: undeclared attribute %q", m.Name, a))
			}
		}
		if len(m.Sources) == 0 && m.ProducedBy == "" && len(m.RatioOf) == 0 {
			errs = append(errs, fmt.Errorf("metric %q: needs sources, produced_by or ratio_of", m.Name))
		}
		for engine, sources := range m.Sources {
			if s.Engines[engine] == nil {
				errs = append(errs, fmt.Errorf("metric %q: unknown engine %q", m.Name, engine))
				continue
			}
			for _, src := range sources {
				if prev, dup := seenSource[engine+"/"+src.Display()]; dup {
					errs = append(errs, fmt.Errorf("source %s %q mapped twice (%s and %s)", engine, src.Display(), prev, m.Name))
				}
				seenSource[engine+"/"+src.Display()] = m.Name
				errs = append(errs, validateSelect(engine, m.Name, src, selectedOn)...)
				if src.FromLabel != "" && (m.Instrument != Gauge || len(src.Select) > 0 || src.Labels[src.FromLabel] != "") {
					errs = append(errs, fmt.Errorf("metric %q: source %q: from_label needs a gauge, and neither select nor a rename of the label", m.Name, src.Name))
				}
				if src.Versions == "" {
					errs = append(errs, fmt.Errorf("metric %q: source %q: versions is required", m.Name, src.Name))
				}
				if _, err := src.Scale(m.Unit); err != nil {
					errs = append(errs, fmt.Errorf("metric %q: source %q: %w", m.Name, src.Name, err))
				}
				for attr := range src.SetAttributes {
					if !attrs[attr] {
						errs = append(errs, fmt.Errorf("metric %q: source %q sets undeclared attribute %q", m.Name, src.Name, attr))
					}
				}
				for from, to := range src.Labels {
					if !attrs[to] {
						errs = append(errs, fmt.Errorf("metric %q: source %q renames %q to undeclared attribute %q", m.Name, src.Name, from, to))
					}
				}
			}
		}
	}
	for _, m := range s.Metrics {
		if len(m.RatioOf) == 0 {
			continue
		}
		if len(m.RatioOf) != 2 || m.Instrument != Gauge {
			errs = append(errs, fmt.Errorf("metric %q: ratio_of needs a gauge and exactly two counters", m.Name))
			continue
		}
		for _, part := range m.RatioOf {
			if c := s.Metric(part); c == nil || c.Instrument != Counter {
				errs = append(errs, fmt.Errorf("metric %q: ratio_of %q is not a canonical counter", m.Name, part))
			}
		}
	}
	return errors.Join(errs...)
}

// validateEnums checks the enumerated attributes: each value a lower-case identifier, declared once, with a
// description; a severity only on the detectors, and one of llm.incident.severity's values.
func (s *Schema) validateEnums() []error {
	var errs []error
	severities := map[string]bool{}
	for _, v := range s.Enum(AttrLLMIncidentSeverity) {
		severities[v.Value] = true
	}
	for _, a := range s.Attributes {
		seen := map[string]bool{}
		for _, v := range a.Enum {
			if !enumValue.MatchString(v.Value) {
				errs = append(errs, fmt.Errorf("attribute %q: enum value %q is not a lower-case identifier", a.Name, v.Value))
			}
			if seen[v.Value] {
				errs = append(errs, fmt.Errorf("attribute %q: enum value %q declared twice", a.Name, v.Value))
			}
			seen[v.Value] = true
			if strings.TrimSpace(v.Description) == "" {
				errs = append(errs, fmt.Errorf("attribute %q: enum value %q has no description", a.Name, v.Value))
			}
			switch {
			case a.Name == AttrLLMIncidentDetector && !severities[v.Severity]:
				errs = append(errs, fmt.Errorf("detector %q: severity %q is not a value of %s", v.Value, v.Severity, AttrLLMIncidentSeverity))
			case a.Name != AttrLLMIncidentDetector && v.Severity != "":
				errs = append(errs, fmt.Errorf("attribute %q: enum value %q has a severity; only detectors have one", a.Name, v.Value))
			}
		}
	}
	return errs
}

// Enum returns the values of an enumerated attribute, in the schema's order (nil for an open attribute).
func (s *Schema) Enum(attribute string) []EnumValue {
	for _, a := range s.Attributes {
		if a.Name == attribute {
			return a.Enum
		}
	}
	return nil
}

func validateSelect(engine, metric string, src *Source, selectedOn map[string]string) []error {
	var errs []error
	on := strings.Join(slices.Sorted(maps.Keys(src.Select)), ",")
	for label, value := range src.Select {
		if label == "" || value == "" {
			errs = append(errs, fmt.Errorf("metric %q: source %q: select needs a label and a value, got %q=%q", metric, src.Name, label, value))
		}
		if _, renamed := src.Labels[label]; renamed {
			errs = append(errs, fmt.Errorf("metric %q: source %q: label %q is both selected (and dropped) and renamed", metric, src.Name, label))
		}
	}
	key := engine + "/" + src.Name
	if prev, seen := selectedOn[key]; seen && prev != on {
		switch {
		case prev == "" || on == "":
			errs = append(errs, fmt.Errorf("source %s %q is mapped both whole and with select", engine, src.Name))
		default:
			errs = append(errs, fmt.Errorf("source %s %q selects on different labels (%s and %s)", engine, src.Name, prev, on))
		}
	}
	selectedOn[key] = on
	return errs
}

// unitScales are the conversions the processor knows: source unit -> canonical unit -> factor.
var unitScales = map[string]map[string]float64{
	"ms":  {"s": 1e-3},
	"us":  {"s": 1e-6},
	"ns":  {"s": 1e-9},
	"MiB": {"By": 1 << 20},
	"mJ":  {"J": 1e-3},
	"%":   {"1": 1e-2},
	"MHz": {"Hz": 1e6},
}

// Scale is the factor that converts a value in the source's unit into the canonical unit.
func (src *Source) Scale(canonicalUnit string) (float64, error) {
	if src.Unit == "" || src.Unit == canonicalUnit {
		return 1, nil
	}
	if f, ok := unitScales[src.Unit][canonicalUnit]; ok {
		return f, nil
	}
	return 0, fmt.Errorf("no conversion from %q to %q", src.Unit, canonicalUnit)
}

// SpanStages returns every engine's stage-span names mapped to the phase they measure.
func (s *Schema) SpanStages() map[string]string {
	out := map[string]string{}
	for _, name := range s.EngineNames {
		for stage, phase := range s.Engines[name].SpanStages {
			out[stage] = phase
		}
	}
	return out
}

// SpanTrees returns the engines' request-tree descriptions, in engine order.
func (s *Schema) SpanTrees() []*SpanTree {
	var out []*SpanTree
	for _, name := range s.EngineNames {
		if t := s.Engines[name].SpanTree; t != nil && t.requestName != nil {
			out = append(out, t)
		}
	}
	return out
}

// Metric returns the canonical metric with the given name, or nil.
func (s *Schema) Metric(name string) *Metric {
	for _, m := range s.Metrics {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// PassthroughReason says why a vendor family of an engine is deliberately left unmapped ("" if it is not).
// A family spelled with an alias prefix is looked up under the engine's own prefix.
func (e *Engine) PassthroughReason(family string) string {
	names := []string{family}
	for _, alias := range e.AliasPrefixes {
		if rest, ok := strings.CutPrefix(family, alias); ok {
			for _, prefix := range e.MetricPrefixes {
				names = append(names, prefix+rest)
			}
		}
	}
	for _, name := range names {
		for _, p := range e.Passthrough {
			if p.Match == name || (strings.HasSuffix(p.Match, "_") || strings.HasSuffix(p.Match, ":")) && strings.HasPrefix(name, p.Match) {
				return p.Reason
			}
		}
	}
	return ""
}

// Spellings returns every wire name under which an engine may expose a source family: the name itself and
// its spellings under the engine's alias prefixes (for example Ray Serve LLM's `ray_vllm:` and `ray_vllm_`).
func (e *Engine) Spellings(sourceName string) []string {
	names := []string{sourceName}
	for _, prefix := range e.MetricPrefixes {
		rest, ok := strings.CutPrefix(sourceName, prefix)
		if !ok {
			continue
		}
		for _, alias := range e.AliasPrefixes {
			names = append(names, alias+rest)
		}
	}
	return slices.Compact(names)
}
