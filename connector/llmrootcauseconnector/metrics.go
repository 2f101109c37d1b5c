package llmrootcauseconnector

import (
	"math"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// overflowAttribute marks the series that collects what falls beyond max_series, as the stock span-metrics
// connector does, so dashboards can show that a cap was hit.
const overflowAttribute = "otel.metric.overflow"

const (
	phaseQueue   = "queue"
	phasePrefill = "prefill"
	phaseDecode  = "decode"
	phaseOther   = "other"
)

type exemplar struct {
	traceID pcommon.TraceID
	spanID  pcommon.SpanID
	value   float64
	time    pcommon.Timestamp
}

type series struct {
	attrs    []string // key, value pairs
	count    uint64
	sum      float64
	buckets  []uint64 // histograms only
	value    float64  // counters only
	exemplar *exemplar
}

// family is one output metric's series, capped.
type family struct {
	name   string
	series map[string]*series
	order  []string // insertion order, for stable output
}

// aggregator keeps the connector's cumulative metrics between flushes. Not safe for concurrent use: the
// core serializes access.
type aggregator struct {
	cfg        *Config
	start      pcommon.Timestamp
	phases     *family
	rootCauses *family
	slow       *family
	tenantToks *family
	keyBuf     strings.Builder
}

func newAggregator(cfg *Config, start time.Time) *aggregator {
	return &aggregator{cfg: cfg, start: pcommon.NewTimestampFromTime(start),
		phases:     &family{name: schema.MetricLLMRequestPhaseDuration, series: map[string]*series{}},
		rootCauses: &family{name: schema.MetricLLMRequestRootCause, series: map[string]*series{}},
		slow:       &family{name: schema.MetricLLMRequestSlow, series: map[string]*series{}},
		tenantToks: &family{name: schema.MetricLLMTenantPromptTokens, series: map[string]*series{}},
	}
}

func (a *aggregator) dimensions(r *request) []string {
	out := make([]string, 0, 2*len(a.cfg.Dimensions)+2)
	for _, d := range a.cfg.Dimensions {
		var v string
		switch d {
		case schema.AttrGenAIRequestModel:
			v = r.model
		case schema.AttrLLMTenant:
			v = r.tenant
		case schema.AttrLLMEngineName:
			v = r.engine
		case schema.AttrServiceInstanceID:
			v = firstNonEmpty(r.replica, r.replicaKey)
		}
		out = append(out, d, orUnknown(v))
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// get finds or makes the series for attrs (the first pair is the per-family attribute), folding new series
// into the overflow series once the family holds max_series.
func (a *aggregator) get(f *family, attrs []string, histogram bool) *series {
	a.keyBuf.Reset()
	for _, s := range attrs {
		a.keyBuf.WriteString(s)
		a.keyBuf.WriteByte(0)
	}
	key := a.keyBuf.String()
	if s, ok := f.series[key]; ok {
		return s
	}
	if len(f.series) >= a.cfg.MaxSeries {
		key, attrs = overflowAttribute, []string{overflowAttribute, "true"}
		if s, ok := f.series[key]; ok {
			return s
		}
	}
	s := &series{attrs: append([]string(nil), attrs...)}
	if histogram {
		s.buckets = make([]uint64, len(a.cfg.HistogramBuckets)+1)
	}
	f.series[key] = s
	f.order = append(f.order, key)
	return s
}

func (a *aggregator) record(r *request, v verdict) {
	dims := a.dimensions(r)
	ex := &exemplar{traceID: r.span.TraceID(), spanID: r.span.SpanID(), value: r.e2e, time: r.span.EndTimestamp()}
	with := func(k, val string) []string { return append([]string{k, val}, dims...) }
	for _, p := range []struct {
		name  string
		value float64
	}{{phaseQueue, r.queue}, {phasePrefill, r.prefill}, {phaseDecode, r.decode}, {phaseOther, r.other}} {
		if math.IsNaN(p.value) {
			continue
		}
		s := a.get(a.phases, with(schema.AttrLLMPhase, p.name), true)
		s.count++
		s.sum += p.value
		s.buckets[sort.SearchFloat64s(a.cfg.HistogramBuckets, p.value)]++
		s.exemplar = &exemplar{traceID: ex.traceID, spanID: ex.spanID, value: p.value, time: ex.time}
	}
	s := a.get(a.rootCauses, with(schema.AttrLLMRootCause, v.cause), false)
	s.value++
	s.exemplar = ex
	if v.slow {
		s := a.get(a.slow, with(schema.AttrLLMSlowReason, v.reason), false)
		s.value++
		s.exemplar = ex
	}
	if !math.IsNaN(r.cachedTokens) && !math.IsNaN(r.promptTokens) {
		cached := math.Min(r.cachedTokens, r.promptTokens)
		a.get(a.tenantToks, with(schema.AttrLLMPromptCache, "cached"), false).value += cached
		a.get(a.tenantToks, with(schema.AttrLLMPromptCache, "uncached"), false).value += r.promptTokens - cached
	}
}

// flush writes every series, cumulative since start, into md. Exemplars cover the interval since the last
// flush and are then cleared.
func (a *aggregator) flush(now time.Time, scope pmetric.ScopeMetrics, sch *schema.Schema) {
	ts := pcommon.NewTimestampFromTime(now)
	for _, f := range []*family{a.phases, a.rootCauses, a.slow, a.tenantToks} {
		if len(f.order) == 0 {
			continue
		}
		m := scope.Metrics().AppendEmpty()
		def := sch.Metric(f.name)
		m.SetName(f.name)
		m.SetUnit(def.Unit)
		m.SetDescription(def.Description)
		if f == a.phases {
			h := m.SetEmptyHistogram()
			h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			for _, key := range f.order {
				s := f.series[key]
				dp := h.DataPoints().AppendEmpty()
				a.point(dp.Attributes(), s)
				dp.SetStartTimestamp(a.start)
				dp.SetTimestamp(ts)
				dp.SetCount(s.count)
				dp.SetSum(s.sum)
				dp.ExplicitBounds().FromRaw(a.cfg.HistogramBuckets)
				dp.BucketCounts().FromRaw(s.buckets)
				putExemplar(dp.Exemplars(), s)
			}
			continue
		}
		sum := m.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for _, key := range f.order {
			s := f.series[key]
			dp := sum.DataPoints().AppendEmpty()
			a.point(dp.Attributes(), s)
			dp.SetStartTimestamp(a.start)
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
	if s.exemplar == nil {
		return
	}
	e := exs.AppendEmpty()
	e.SetTraceID(s.exemplar.traceID)
	e.SetSpanID(s.exemplar.spanID)
	e.SetDoubleValue(s.exemplar.value)
	e.SetTimestamp(s.exemplar.time)
	s.exemplar = nil
}

func (a *aggregator) empty() bool {
	return len(a.phases.order)+len(a.rootCauses.order)+len(a.slow.order)+len(a.tenantToks.order) == 0
}
