package llmnormalizeprocessor

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/logonce"
	"github.com/servescope/servescope/internal/panicguard"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/processor/llmnormalizeprocessor/internal/metadata"
)

type normalizer struct {
	cfg    *Config
	rules  *ruleSet
	logger *zap.Logger

	warned logonce.Set // metric names whose instrument did not fit, reported once

	guard  *panicguard.Guard
	points metric.Int64Counter
	mapped metric.MeasurementOption
	passed metric.MeasurementOption
	drop   metric.MeasurementOption
}

func newNormalizer(cfg *Config, set component.TelemetrySettings) (*normalizer, error) {
	s, err := schema.Default()
	if err != nil {
		return nil, err
	}
	telemetry, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	outcome := func(v string) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", v)))
	}
	guard := panicguard.NewGuard("llm_normalize", set.Logger, telemetry.LlmNormalizeRecoveredPanics)
	return &normalizer{
		cfg: cfg, rules: buildRules(s, cfg.Engines), logger: set.Logger, guard: guard,
		points: telemetry.LlmNormalizeDatapoints, mapped: outcome("mapped"), passed: outcome("passthrough"), drop: outcome("dropped"),
	}, nil
}

// counts accumulates one batch's outcomes so telemetry costs three calls per batch, not one per metric.
type counts struct{ mapped, passed, dropped int64 }

// processMetrics maps a batch in place. An internal error part way (a bug some input reaches) is reported
// and the batch goes on as far as it got: every point is still a valid point, and dropping the batch would
// lose the engine's good data with it.
func (n *normalizer) processMetrics(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	n.guard.Run("normalize", func() { n.normalize(ctx, md) })
	return md, nil
}

func (n *normalizer) normalize(ctx context.Context, md pmetric.Metrics) {
	var c counts
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		rules := n.rulesFor(rm)
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			n.processScope(sms.At(j).Metrics(), rules, &c)
		}
	}
	if c.mapped > 0 {
		n.points.Add(ctx, c.mapped, n.mapped)
	}
	if c.passed > 0 {
		n.points.Add(ctx, c.passed, n.passed)
	}
	if c.dropped > 0 {
		n.points.Add(ctx, c.dropped, n.drop)
	}
}

// rulesFor picks the engine of a resource: its llm.engine.name when that names a mapped engine, else the
// first metric name that carries an engine prefix (the stock prometheus receiver sets no engine attribute).
func (n *normalizer) rulesFor(rm pmetric.ResourceMetrics) engineRules {
	if v, ok := rm.Resource().Attributes().Get(schema.AttrLLMEngineName); ok {
		if rules := n.rules.byEngine[v.Str()]; rules != nil {
			return rules
		}
	}
	sms := rm.ScopeMetrics()
	for j := 0; j < sms.Len(); j++ {
		ms := sms.At(j).Metrics()
		for k := 0; k < ms.Len(); k++ {
			if engine := n.rules.detect(ms.At(k).Name()); engine != "" {
				return n.rules.byEngine[engine]
			}
		}
	}
	return nil
}

// mapped is one metric of the scope that takes a canonical name. fresh metrics were split out of a
// vendor family by select and are rewritten in place even under keep_originals: the original family is
// still there.
type mapped struct {
	idx   int
	r     *rule
	fresh bool
}

func (n *normalizer) processScope(ms pmetric.MetricSlice, rules engineRules, c *counts) {
	original := ms.Len()
	var drop []bool
	markDrop := func(i int) {
		for len(drop) <= i {
			drop = append(drop, false)
		}
		drop[i] = true
	}
	unmapped := func(i int) {
		if n.cfg.DropUnmapped {
			markDrop(i)
			c.dropped += int64(dataPointCount(ms.At(i)))
		} else {
			c.passed += int64(dataPointCount(ms.At(i)))
		}
	}
	// Pass 1: find each metric's rule and group the metrics by canonical metric. Slices indexed by the
	// canonical metric's position in the schema, not maps: this runs for every scope.
	var groups [][]mapped // per canonical metric: the metrics mapped onto it
	var order []int       // canonical metrics in order of first appearance
	group := func(mp mapped) {
		if groups == nil {
			groups = make([][]mapped, n.rules.metrics)
		}
		if len(groups[mp.r.id]) == 0 {
			order = append(order, mp.r.id)
		}
		groups[mp.r.id] = append(groups[mp.r.id], mp)
	}
	for i := 0; i < original; i++ {
		m := ms.At(i)
		f := rules[m.Name()]
		if f != nil {
			for _, r := range f.fromLabel {
				if mp, ok := n.readLabel(ms, i, r); ok {
					group(mp)
				}
			}
		}
		switch {
		case f == nil, f.whole == nil && f.split == nil: // a family read only for its labels stays as it came
			unmapped(i)
		case f.split != nil:
			split, left := n.splitOut(ms, i, f.split)
			for _, mp := range split {
				group(mp)
			}
			switch {
			case n.cfg.KeepOriginals: // the family stays whole, its selected series also under canonical names
				c.passed += int64(left)
			case left > 0: // series no source selects (Triton's memory_type=...) stay as they came
				unmapped(i)
			default:
				markDrop(i)
			}
		case n.fits(m, f.whole):
			group(mapped{idx: i, r: f.whole})
		default:
			unmapped(i)
		}
	}
	// Pass 2: rewrite. When several families map onto one canonical metric (a release in transition that
	// exposes two spellings; DCGM's SM and memory clocks), their series merge into one metric, and where two
	// sources carry the same series (same attributes after the rewrite) the higher-ranked source's point wins.
	var homes []pmetric.Metric
	for _, id := range order {
		mps := groups[id]
		sort.SliceStable(mps, func(a, b int) bool { return mps[a].r.rank < mps[b].r.rank })
		var home pmetric.Metric
		for k, mp := range mps {
			m := ms.At(mp.idx)
			target, idx := m, mp.idx
			if n.cfg.KeepOriginals && !mp.fresh {
				target = ms.AppendEmpty()
				m.CopyTo(target)
				idx = ms.Len() - 1
			}
			apply(target, mp.r)
			if k == 0 {
				home = target
				c.mapped += int64(dataPointCount(target))
				continue
			}
			moved, duplicates := mergeNewSeries(home, target)
			c.mapped += int64(moved)
			c.dropped += int64(duplicates)
			markDrop(idx)
		}
		if homes == nil {
			homes = make([]pmetric.Metric, n.rules.metrics)
		}
		homes[id] = home
	}
	none := pmetric.Metric{}
	for _, d := range n.rules.ratios {
		if homes != nil && homes[d.numeratorID] != none && homes[d.denominatorID] != none && homes[d.id] == none {
			deriveRatio(ms, homes[d.numeratorID], homes[d.denominatorID], d.gauge)
		}
	}
	if drop != nil {
		i := -1
		ms.RemoveIf(func(pmetric.Metric) bool { i++; return i < len(drop) && drop[i] })
	}
}

// splitOut copies the series of ms[i] that sp selects into one new metric per canonical metric, appended
// to ms, with the selecting labels dropped; unless keep_originals is set, those series leave ms[i], which
// keeps only the series no source selects. A canonical metric the family's type cannot carry keeps its
// series in ms[i] (and is reported once, as for a whole family). left counts the series not split out.
func (n *normalizer) splitOut(ms pmetric.MetricSlice, i int, sp *split) (out []mapped, left int) {
	m := ms.At(i)
	present := map[*rule]bool{}
	for _, attrs := range pointAttributes(m) {
		if r := sp.ruleFor(attrs); r != nil {
			present[r] = true
		}
	}
	moved := map[*rule]bool{}
	for _, r := range sp.order {
		if !present[r] || moved[r] || !n.fits(m, r) {
			continue
		}
		moved[r] = true
		t := ms.AppendEmpty()
		m.CopyTo(t)
		removePoints(t, func(attrs pcommon.Map) bool { return sp.ruleFor(attrs) != r })
		removePoints(t, func(attrs pcommon.Map) bool {
			for _, label := range sp.labels {
				attrs.Remove(label)
			}
			return false
		})
		out = append(out, mapped{idx: ms.Len() - 1, r: r, fresh: true})
	}
	removePoints(m, func(attrs pcommon.Map) bool {
		taken := moved[sp.ruleFor(attrs)]
		if !taken {
			left++
		}
		return taken && !n.cfg.KeepOriginals
	})
	return out, left
}

// readLabel appends to ms a gauge whose points are ms[i]'s series with the value of r's label as their
// value (vLLM's cache_config_info{block_size="16"} 1 gives 16), keeping of the other labels only those the
// engine renames to canonical attributes (the replica's engine index, the model): the rest of an info
// metric's labels are configuration, not identity. A series whose label is missing or not a finite number
// gives no point; when none gives one, nothing is appended.
func (n *normalizer) readLabel(ms pmetric.MetricSlice, i int, r *rule) (mapped, bool) {
	m := ms.At(i)
	if m.Type() != pmetric.MetricTypeGauge && m.Type() != pmetric.MetricTypeSum {
		n.warnOnce(m.Name()+"/"+r.fromLabel, fmt.Sprintf("%s arrives as %s; %s is read from a gauge's labels only", m.Name(), m.Type(), r.metric.Name))
		return mapped{}, false
	}
	keep := make(map[string]bool, len(r.renames))
	for _, rn := range r.renames {
		keep[rn[0]] = true
	}
	src := m.Gauge().DataPoints()
	if m.Type() == pmetric.MetricTypeSum {
		src = m.Sum().DataPoints()
	}
	points := pmetric.NewNumberDataPointSlice()
	for _, dp := range src.All() {
		label, ok := dp.Attributes().Get(r.fromLabel)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(label.AsString(), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			continue // vLLM writes "None" for a configuration it has not resolved
		}
		p := points.AppendEmpty()
		p.SetStartTimestamp(dp.StartTimestamp())
		p.SetTimestamp(dp.Timestamp())
		p.SetDoubleValue(v)
		dp.Attributes().Range(func(k string, val pcommon.Value) bool {
			if keep[k] {
				val.CopyTo(p.Attributes().PutEmpty(k))
			}
			return true
		})
	}
	if points.Len() == 0 {
		return mapped{}, false
	}
	t := ms.AppendEmpty()
	t.SetName(m.Name())
	points.MoveAndAppendTo(t.SetEmptyGauge().DataPoints())
	return mapped{idx: ms.Len() - 1, r: r, fresh: true}, true
}

// pointAttributes returns the attributes of every data point of m, whatever its type.
func pointAttributes(m pmetric.Metric) []pcommon.Map {
	var out []pcommon.Map
	removePoints(m, func(attrs pcommon.Map) bool { out = append(out, attrs); return false })
	return out
}

// removePoints removes the data points of m for which remove returns true; it visits every point once.
func removePoints(m pmetric.Metric, remove func(pcommon.Map) bool) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		m.Gauge().DataPoints().RemoveIf(func(dp pmetric.NumberDataPoint) bool { return remove(dp.Attributes()) })
	case pmetric.MetricTypeSum:
		m.Sum().DataPoints().RemoveIf(func(dp pmetric.NumberDataPoint) bool { return remove(dp.Attributes()) })
	case pmetric.MetricTypeHistogram:
		m.Histogram().DataPoints().RemoveIf(func(dp pmetric.HistogramDataPoint) bool { return remove(dp.Attributes()) })
	case pmetric.MetricTypeExponentialHistogram:
		m.ExponentialHistogram().DataPoints().RemoveIf(func(dp pmetric.ExponentialHistogramDataPoint) bool { return remove(dp.Attributes()) })
	case pmetric.MetricTypeSummary:
		m.Summary().DataPoints().RemoveIf(func(dp pmetric.SummaryDataPoint) bool { return remove(dp.Attributes()) })
	}
}

// mergeNewSeries copies into home the points of other whose series home does not have yet; both carry the
// same canonical metric, so after apply they have the same type.
func mergeNewSeries(home, other pmetric.Metric) (moved, duplicates int) {
	switch home.Type() {
	case pmetric.MetricTypeGauge:
		return mergePoints(home.Gauge().DataPoints(), other.Gauge().DataPoints())
	case pmetric.MetricTypeSum:
		return mergePoints(home.Sum().DataPoints(), other.Sum().DataPoints())
	case pmetric.MetricTypeHistogram:
		return mergePoints(home.Histogram().DataPoints(), other.Histogram().DataPoints())
	}
	return 0, dataPointCount(other)
}

type pointSlice[P interface {
	Attributes() pcommon.Map
	CopyTo(P)
}] interface {
	Len() int
	At(int) P
	AppendEmpty() P
}

func mergePoints[P interface {
	Attributes() pcommon.Map
	CopyTo(P)
}, S pointSlice[P]](home, other S) (moved, duplicates int) {
	have := make(map[string]bool, home.Len())
	for i := 0; i < home.Len(); i++ {
		have[seriesKey(home.At(i).Attributes())] = true
	}
	for i := 0; i < other.Len(); i++ {
		p := other.At(i)
		if have[seriesKey(p.Attributes())] {
			duplicates++
			continue
		}
		p.CopyTo(home.AppendEmpty())
		moved++
	}
	return moved, duplicates
}

// deriveRatio adds the gauge = numerator / denominator for each series present in both counters (for example
// llm.prefix_cache.hit_ratio = hits / queries): a ratio of the cumulative sums, so it holds since the engine
// started (rate both in the backend for a windowed ratio).
func deriveRatio(ms pmetric.MetricSlice, hits, queries pmetric.Metric, gauge canonical.Gauge) {
	if hits.Type() != pmetric.MetricTypeSum || queries.Type() != pmetric.MetricTypeSum {
		return
	}
	queriesBySeries := map[string]pmetric.NumberDataPoint{}
	for _, q := range queries.Sum().DataPoints().All() {
		queriesBySeries[seriesKey(q.Attributes())] = q
	}
	var ratio pmetric.Gauge
	for _, h := range hits.Sum().DataPoints().All() {
		q, ok := queriesBySeries[seriesKey(h.Attributes())]
		if !ok || numberValue(q) <= 0 {
			continue // no lookups yet: the ratio is undefined, not 0
		}
		if ratio == (pmetric.Gauge{}) {
			ratio = gauge.AppendTo(ms)
		}
		dp := ratio.DataPoints().AppendEmpty()
		h.Attributes().CopyTo(dp.Attributes())
		dp.SetTimestamp(h.Timestamp())
		dp.SetDoubleValue(numberValue(h) / numberValue(q))
	}
}

func numberValue(dp pmetric.NumberDataPoint) float64 {
	if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(dp.IntValue())
	}
	return dp.DoubleValue()
}

func seriesKey(attrs pcommon.Map) string {
	keys := make([]string, 0, attrs.Len())
	for k, v := range attrs.All() {
		keys = append(keys, k+"\xfe"+v.AsString())
	}
	sort.Strings(keys)
	return strings.Join(keys, "\xff")
}

// fits reports whether a metric's data type can carry the canonical instrument; a histogram cannot be made
// from a gauge, for example. A misfit stays under its vendor name and is reported once.
func (n *normalizer) fits(m pmetric.Metric, r *rule) bool {
	t := m.Type()
	ok := false
	switch r.metric.Instrument {
	case schema.Histogram:
		ok = t == pmetric.MetricTypeHistogram
	case schema.Counter, schema.Gauge:
		ok = t == pmetric.MetricTypeSum || t == pmetric.MetricTypeGauge
	}
	if !ok {
		n.warnOnce(m.Name(), fmt.Sprintf("%s arrives as %s but %s is a %s; leaving it unmapped", m.Name(), t, r.metric.Name, r.metric.Instrument))
	}
	return ok
}

func (n *normalizer) warnOnce(key, msg string) {
	if n.warned.First(key) {
		n.logger.Warn(msg)
	}
}

// apply rewrites one metric in place onto its canonical form.
func apply(m pmetric.Metric, r *rule) {
	m.SetName(r.metric.Name)
	m.SetUnit(r.metric.Unit)
	m.SetDescription(r.metric.Description)
	switch r.metric.Instrument {
	case schema.Counter:
		if m.Type() == pmetric.MetricTypeGauge { // an untyped or gauge-typed counter on the wire
			points := pmetric.NewNumberDataPointSlice()
			m.Gauge().DataPoints().MoveAndAppendTo(points)
			sum := m.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			points.MoveAndAppendTo(sum.DataPoints())
		}
	case schema.Gauge:
		if m.Type() == pmetric.MetricTypeSum {
			points := pmetric.NewNumberDataPointSlice()
			m.Sum().DataPoints().MoveAndAppendTo(points)
			points.MoveAndAppendTo(m.SetEmptyGauge().DataPoints())
		}
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		rewriteNumbers(m.Gauge().DataPoints(), r)
	case pmetric.MetricTypeSum:
		rewriteNumbers(m.Sum().DataPoints(), r)
	case pmetric.MetricTypeHistogram:
		rewriteHistograms(m.Histogram().DataPoints(), r)
	}
}

// replica reports whether a data point repeats another one's state (a tensor-parallel rank other than 0).
func (r *rule) replica(attrs pcommon.Map) bool {
	for _, rl := range r.replicated {
		if v, ok := attrs.Get(rl[0]); ok && v.AsString() != rl[1] {
			return true
		}
	}
	return false
}

// rewriteAttributes renames the vendor labels and adds the source's constant attributes.
func (r *rule) rewriteAttributes(attrs pcommon.Map) {
	renameAttributes(attrs, r.renames)
	setAttributes(attrs, r.set)
}

func rewriteNumbers(points pmetric.NumberDataPointSlice, r *rule) {
	if len(r.replicated) > 0 {
		points.RemoveIf(func(dp pmetric.NumberDataPoint) bool { return r.replica(dp.Attributes()) })
	}
	for i := 0; i < points.Len(); i++ {
		dp := points.At(i)
		r.rewriteAttributes(dp.Attributes())
		if r.scale == 1 {
			continue
		}
		switch dp.ValueType() {
		case pmetric.NumberDataPointValueTypeInt:
			dp.SetDoubleValue(float64(dp.IntValue()) * r.scale)
		case pmetric.NumberDataPointValueTypeDouble:
			dp.SetDoubleValue(dp.DoubleValue() * r.scale)
		}
	}
}

func rewriteHistograms(points pmetric.HistogramDataPointSlice, r *rule) {
	if len(r.replicated) > 0 {
		points.RemoveIf(func(dp pmetric.HistogramDataPoint) bool { return r.replica(dp.Attributes()) })
	}
	for i := 0; i < points.Len(); i++ {
		dp := points.At(i)
		r.rewriteAttributes(dp.Attributes())
		if r.scale == 1 {
			continue
		}
		bounds := dp.ExplicitBounds()
		for b := 0; b < bounds.Len(); b++ {
			bounds.SetAt(b, bounds.At(b)*r.scale)
		}
		if dp.HasSum() {
			dp.SetSum(dp.Sum() * r.scale)
		}
		if dp.HasMin() {
			dp.SetMin(dp.Min() * r.scale)
		}
		if dp.HasMax() {
			dp.SetMax(dp.Max() * r.scale)
		}
	}
}

func renameAttributes(attrs pcommon.Map, renames [][2]string) {
	for _, rn := range renames {
		v, ok := attrs.Get(rn[0])
		if !ok {
			continue
		}
		if _, taken := attrs.Get(rn[1]); taken { // the point already says it under the canonical name
			attrs.Remove(rn[0])
			continue
		}
		if v.Type() == pcommon.ValueTypeStr { // every Prometheus label; no copy of the value needed
			s := v.Str()
			attrs.Remove(rn[0])
			attrs.PutStr(rn[1], s)
			continue
		}
		moved := pcommon.NewValueEmpty()
		v.CopyTo(moved)
		attrs.Remove(rn[0])
		moved.CopyTo(attrs.PutEmpty(rn[1]))
	}
}

func setAttributes(attrs pcommon.Map, set [][2]string) {
	for _, kv := range set {
		attrs.PutStr(kv[0], kv[1])
	}
}

func dataPointCount(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	}
	return 0
}
