package llmrootcauseconnector

import (
	"math"
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/heavyhitters"
	"github.com/servescope/servescope/internal/schema"
)

// overflowAttribute marks the series that collects what falls beyond max_series, as the stock span-metrics
// connector does, so dashboards can show that a cap was hit.
const overflowAttribute = "otel.metric.overflow"

type exemplar struct {
	traceID pcommon.TraceID
	spanID  pcommon.SpanID
	value   float64
	time    pcommon.Timestamp
}

// seriesKey is a series' attribute values: the family's own attribute first, then the dimensions in order,
// then the value of the family's second attribute where it has one (the prompt family of prompt tokens).
type seriesKey [2 + maxDimensions]string

const (
	maxDimensions = 4
	extraSlot     = 1 + maxDimensions
)

type series struct {
	attrs    []string // key, value pairs
	start    pcommon.Timestamp
	count    uint64
	sum      float64
	buckets  []uint64 // histograms only
	value    float64  // counters only
	exemplar *exemplar
	// hasExemplar: the exemplar belongs to the current interval
	hasExemplar bool
}

// family is one output metric's series, capped.
type family struct {
	metric canonical.Metric
	attr   string // the family's own attribute (llm.phase, llm.root_cause, ...)
	extra  string // a second attribute of its own, after the dimensions ("" when none)
	series map[seriesKey]*series
	order  []seriesKey // insertion order, for stable output
}

// aggregator keeps the connector's cumulative metrics between flushes. Not safe for concurrent use: the
// core serializes access.
type aggregator struct {
	cfg        *Config
	start      pcommon.Timestamp
	lastFlush  pcommon.Timestamp
	flushed    bool
	phases     *family
	rootCauses *family
	slow       *family
	tenantToks *family
	tokens     *family
	// promptFamilies are the prompt families with their own series: the max_prompt_families busiest.
	promptFamilies *heavyhitters.Tracker
	// rows finds the series of one set of dimension values with one lookup: a request adds to about ten
	// series, and each lookup in a family's map hashes and compares six strings. Cleared whenever series
	// are dropped (forget), so a row never points at a series that is gone; at most max_series rows, and
	// as many prompt-family pairs among them (promptPairs counts those).
	rows        map[dimensionKey]*seriesRow
	promptPairs int
}

// dimensionKey is a request's dimension values, in the configured order.
type dimensionKey [maxDimensions]string

// seriesRow is every series a set of dimension values has been seen adding to, by the family's own value.
type seriesRow struct {
	dims               dimensionKey
	phases             [4]*series // queue, prefill, decode, other
	causes, reasons    []namedSeries
	prompt, generation *series
	promptCache        map[string]*[2]*series // by prompt family: cached, uncached
}

type namedSeries struct {
	name string
	s    *series
}

func newAggregator(cfg *Config, start time.Time) *aggregator {
	return &aggregator{
		cfg: cfg, start: pcommon.NewTimestampFromTime(start),
		phases:     &family{metric: canonical.LLMRequestPhaseDuration, attr: schema.AttrLLMPhase, series: map[seriesKey]*series{}},
		rootCauses: &family{metric: canonical.LLMRequestRootCause, attr: schema.AttrLLMRootCause, series: map[seriesKey]*series{}},
		slow:       &family{metric: canonical.LLMRequestSlow, attr: schema.AttrLLMSlowReason, series: map[seriesKey]*series{}},
		tenantToks: &family{
			metric: canonical.LLMTenantPromptTokens, attr: schema.AttrLLMPromptCache, extra: schema.AttrLLMPromptFamily,
			series: map[seriesKey]*series{},
		},
		tokens:         &family{metric: canonical.LLMTenantTokens, attr: schema.AttrLLMTokenType, series: map[seriesKey]*series{}},
		promptFamilies: heavyhitters.New(cfg.MaxPromptFamilies, cfg.Baseline.Window),
		rows:           map[dimensionKey]*seriesRow{},
	}
}

// otherFamily collects the prompt families beyond max_prompt_families, as `_other` does tenants.
const otherFamily = "_other"

// promptFamily is the prompt family a request's tokens are counted under: `unknown` when none was found,
// `_other` when it is not among the max_prompt_families busiest (neither of those two takes a place). A
// family that loses its place loses its series.
func (a *aggregator) promptFamily(f string, now time.Time) string {
	switch f {
	case "":
		return "unknown"
	case otherFamily, "unknown":
		return f
	}
	return a.promptFamilies.Place(f, now.UnixNano(), otherFamily, func(evicted string) { a.forget(a.tenantToks.extra, evicted) })
}

// forget drops every series whose attribute attr has the value value (a tenant or prompt family that lost
// its place), so the series of those that hold places stay within max_series. A series that comes back
// starts again from zero with a new start time, as a restarted counter does.
func (a *aggregator) forget(attr, value string) {
	a.clearRows()
	for _, f := range []*family{a.phases, a.rootCauses, a.slow, a.tenantToks, a.tokens} {
		kept := f.order[:0]
		for _, key := range f.order {
			if s := f.series[key]; s.has(attr, value) {
				delete(f.series, key)
				continue
			}
			kept = append(kept, key)
		}
		clear(f.order[len(kept):])
		f.order = kept
	}
}

func (s *series) has(attr, value string) bool {
	for i := 0; i+1 < len(s.attrs); i += 2 {
		if s.attrs[i] == attr && s.attrs[i+1] == value {
			return true
		}
	}
	return false
}

// row is the series row of the request's dimension values.
func (a *aggregator) row(r *request) *seriesRow {
	var dims dimensionKey
	a.dimensions(r, &dims)
	if row := a.rows[dims]; row != nil {
		return row
	}
	if len(a.rows) >= a.cfg.MaxSeries {
		a.clearRows()
	}
	row := &seriesRow{dims: dims}
	a.rows[dims] = row
	return row
}

func (a *aggregator) clearRows() {
	clear(a.rows)
	a.promptPairs = 0
}

// key is the series key of the row's dimensions with the family's own value (and second value, if any).
func (row *seriesRow) key(own, extra string) seriesKey {
	key := seriesKey{own}
	copy(key[1:], row.dims[:])
	key[extraSlot] = extra
	return key
}

// named is the row's series of family f whose own value is name, found among those seen before or got.
func (a *aggregator) named(row *seriesRow, seen *[]namedSeries, f *family, name string) *series {
	for _, n := range *seen {
		if n.name == name {
			return n.s
		}
	}
	s := a.get(f, row.key(name, ""), false)
	*seen = append(*seen, namedSeries{name, s})
	return s
}

// once is *slot, got from family f the first time.
func (a *aggregator) once(slot **series, row *seriesRow, f *family, own string, histogram bool) *series {
	if *slot == nil {
		*slot = a.get(f, row.key(own, ""), histogram)
	}
	return *slot
}

// dimensions fills dims with the request's dimension values, in the configured order.
func (a *aggregator) dimensions(r *request, dims *dimensionKey) {
	for i, d := range a.cfg.Dimensions {
		var v string
		switch d {
		case schema.AttrGenAIRequestModel:
			v = r.model
		case schema.AttrLLMTenant:
			v = r.tenantSlot
		case schema.AttrLLMEngineName:
			v = r.engine
		case schema.AttrServiceInstanceID:
			v = firstNonEmpty(r.replica, r.replicaKey)
		}
		dims[i] = orUnknown(v)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// get finds or makes the series for key, folding new series into the overflow series once the family
// holds max_series.
func (a *aggregator) get(f *family, key seriesKey, histogram bool) *series {
	if s, ok := f.series[key]; ok {
		return s
	}
	var attrs []string
	if len(f.series) >= a.cfg.MaxSeries {
		key, attrs = seriesKey{overflowAttribute}, []string{overflowAttribute, "true"}
		if s, ok := f.series[key]; ok {
			return s
		}
	} else {
		attrs = append(attrs, f.attr, key[0])
		for i, d := range a.cfg.Dimensions {
			attrs = append(attrs, d, key[1+i])
		}
		if f.extra != "" {
			attrs = append(attrs, f.extra, key[extraSlot])
		}
	}
	s := &series{attrs: attrs, start: a.start}
	if a.flushed {
		s.start = a.lastFlush // a series born after the first flush counts from then, not from the start
	}
	if histogram {
		s.buckets = make([]uint64, len(a.cfg.HistogramBuckets)+1)
	}
	f.series[key] = s
	f.order = append(f.order, key)
	return s
}

func (a *aggregator) record(r *request, v verdict, now time.Time) {
	// Placing the prompt family may drop another one's series, and with them every row: placed first, so
	// the row looked up below stays good for the whole request.
	hasCached := !math.IsNaN(r.cachedTokens) && !math.IsNaN(r.promptTokens)
	family := ""
	if hasCached {
		family = a.promptFamily(r.family, now)
	}
	row := a.row(r)
	ex := exemplar{traceID: r.span.TraceID(), spanID: r.span.SpanID(), value: r.e2e, time: r.span.EndTimestamp()}
	for i, p := range [len(row.phases)]struct {
		name  string
		value float64
	}{{schema.PhaseQueue, r.queue}, {schema.PhasePrefill, r.prefill}, {schema.PhaseDecode, r.decode}, {schema.PhaseOther, r.other}} {
		if math.IsNaN(p.value) {
			continue
		}
		s := a.once(&row.phases[i], row, a.phases, p.name, true)
		s.count++
		s.sum += p.value
		s.buckets[sort.SearchFloat64s(a.cfg.HistogramBuckets, p.value)]++
		s.setExemplar(ex, p.value)
	}
	s := a.named(row, &row.causes, a.rootCauses, v.cause)
	s.value++
	s.setExemplar(ex, ex.value)
	if v.slow {
		s := a.named(row, &row.reasons, a.slow, v.reason)
		s.value++
		s.setExemplar(ex, ex.value)
	}
	if !math.IsNaN(r.promptTokens) {
		a.once(&row.prompt, row, a.tokens, "prompt", false).value += r.promptTokens
	}
	if !math.IsNaN(r.genTokens) {
		a.once(&row.generation, row, a.tokens, "generation", false).value += r.genTokens
	}
	if hasCached {
		cached := math.Min(r.cachedTokens, r.promptTokens)
		pair := row.promptCache[family]
		if pair == nil {
			if a.promptPairs >= a.cfg.MaxSeries {
				a.clearRows()
				row = a.row(r)
			}
			a.promptPairs++
			if row.promptCache == nil {
				row.promptCache = map[string]*[2]*series{}
			}
			pair = &[2]*series{a.get(a.tenantToks, row.key("cached", family), false), a.get(a.tenantToks, row.key("uncached", family), false)}
			row.promptCache[family] = pair
		}
		pair[0].value += cached
		pair[1].value += r.promptTokens - cached
	}
}

// setExemplar keeps the latest request of the interval, reusing the series' exemplar.
func (s *series) setExemplar(ex exemplar, value float64) {
	if s.exemplar == nil {
		s.exemplar = &exemplar{}
	}
	*s.exemplar = ex
	s.exemplar.value = value
	s.hasExemplar = true
}

// flush writes every series, cumulative since start, into md. Exemplars cover the interval since the last
// flush and are then cleared.
func (a *aggregator) flush(now time.Time, scope pmetric.ScopeMetrics) {
	ts := pcommon.NewTimestampFromTime(now)
	a.lastFlush, a.flushed = ts, true
	for _, f := range []*family{a.phases, a.rootCauses, a.slow, a.tenantToks, a.tokens} {
		if len(f.order) == 0 {
			continue
		}
		m := f.metric.AppendMetric(scope.Metrics())
		if f == a.phases {
			h := m.Histogram()
			for _, key := range f.order {
				s := f.series[key]
				dp := h.DataPoints().AppendEmpty()
				a.point(dp.Attributes(), s)
				dp.SetStartTimestamp(s.start)
				dp.SetTimestamp(ts)
				dp.SetCount(s.count)
				dp.SetSum(s.sum)
				dp.ExplicitBounds().FromRaw(a.cfg.HistogramBuckets)
				dp.BucketCounts().FromRaw(s.buckets)
				putExemplar(dp.Exemplars(), s)
			}
			continue
		}
		sum := m.Sum()
		for _, key := range f.order {
			s := f.series[key]
			dp := sum.DataPoints().AppendEmpty()
			a.point(dp.Attributes(), s)
			dp.SetStartTimestamp(s.start)
			dp.SetTimestamp(ts)
			dp.SetDoubleValue(s.value)
			putExemplar(dp.Exemplars(), s)
		}
	}
}

func (a *aggregator) point(attrs pcommon.Map, s *series) {
	attrs.EnsureCapacity(len(s.attrs) / 2)
	for i := 0; i+1 < len(s.attrs); i += 2 {
		attrs.PutStr(s.attrs[i], s.attrs[i+1])
	}
}

func putExemplar(exs pmetric.ExemplarSlice, s *series) {
	if !s.hasExemplar {
		return
	}
	e := exs.AppendEmpty()
	e.SetTraceID(s.exemplar.traceID)
	e.SetSpanID(s.exemplar.spanID)
	e.SetDoubleValue(s.exemplar.value)
	e.SetTimestamp(s.exemplar.time)
	s.hasExemplar = false
}

func (a *aggregator) empty() bool {
	return len(a.phases.order) == 0 // every request adds phases; the other families follow them
}
