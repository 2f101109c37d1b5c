package enginescrape

import (
	"hash/maphash"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/promtext"
)

// converter turns parsed exposition families into OTLP metrics with cumulative semantics: start times come
// from `_created` series where the engine exposes them (vLLM does), otherwise from the first observation, and
// a counter that goes down (an engine restart) starts a new cumulative run instead of producing a negative rate.
type converter struct {
	series map[string]*seriesState
	gen    uint64
	seed   maphash.Seed // for seriesSet; random per converter, so a page cannot aim at collisions
}

type seriesState struct {
	start pcommon.Timestamp
	last  float64 // counter value, histogram/summary count
	at    pcommon.Timestamp
	gen   uint64
}

// conversion reports what a scrape's conversion noticed, for the caller to log once.
type conversion struct {
	points     int
	nanDropped map[string]int // family -> NaN samples dropped
	infDropped map[string]int // family -> +Inf/-Inf values dropped
	resets     []string       // families with a counter reset
	resetCount int            // series that started a new cumulative run
	malformed  map[string]string
	// repeats counts, per family in order of appearance, the samples of a series already seen in the
	// scrape; repeatExample is the first such series, shortened for a log line.
	repeats       []familyCount
	repeatExample string
}

type familyCount struct {
	family string
	n      int
}

// seriesSet tells the first line of each series of one family from repeats. A page that writes a series
// twice (two exporters merged, a client bug) would otherwise give two points of one series at one time; the
// first line wins, as a reader of the page would take it. The series of a histogram or summary line is its
// part: a bucket (le), a quantile, _count or _sum.
//
// Samples are hashed (name and labels, in any order) rather than keyed by a string built per sample, so a page
// without repeats, the usual one, costs no allocation per sample. A hash match is confirmed by comparing the
// two samples: a collision can only let a repeat through, never drop a series.
type seriesSet struct {
	seed    maphash.Seed
	samples []promtext.Sample
	first   map[uint64]int // hash -> index of the first sample with it
	name    string         // the name all samples' series share (a counter's c and c_total); "" = their own
}

func newSeriesSet(seed maphash.Seed, f *promtext.Family, sharedName string) seriesSet {
	set := seriesSet{seed: seed, samples: f.Samples, name: sharedName}
	if len(f.Samples) > 1 { // most gauge families are one line, which cannot repeat
		set.first = make(map[uint64]int, len(f.Samples))
	}
	return set
}

func (set *seriesSet) nameOf(s promtext.Sample) string {
	if set.name != "" {
		return set.name
	}
	return s.Name
}

// hash adds up one hash per label, so that label order does not matter (the parser has rejected a line
// that repeats a label name).
func (set *seriesSet) hash(s promtext.Sample) uint64 {
	var h maphash.Hash
	h.SetSeed(set.seed)
	h.WriteString(set.nameOf(s))
	sum := h.Sum64()
	for _, l := range s.Labels {
		h.Reset()
		h.WriteString(l.Name)
		h.WriteByte(0xff) // not valid UTF-8: no name ends in it
		h.WriteString(l.Value)
		sum += h.Sum64()
	}
	return sum
}

func (set *seriesSet) sameSeries(a, b promtext.Sample) bool {
	if set.nameOf(a) != set.nameOf(b) || len(a.Labels) != len(b.Labels) {
		return false
	}
	for _, la := range a.Labels {
		found := false
		for _, lb := range b.Labels {
			if la.Name == lb.Name {
				found = la.Value == lb.Value
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// firstOfSeries reports whether sample i of the family is the first line of its series; a repeat is
// counted for the caller to log and dropped.
func (out *conversion) firstOfSeries(set *seriesSet, family string, i int) bool {
	if set.first == nil {
		return true
	}
	s := set.samples[i]
	h := set.hash(s)
	j, known := set.first[h]
	if !known {
		set.first[h] = i
		return true
	}
	if !set.sameSeries(set.samples[j], s) {
		return true // a hash collision
	}
	if n := len(out.repeats); n > 0 && out.repeats[n-1].family == family {
		out.repeats[n-1].n++
	} else {
		out.repeats = append(out.repeats, familyCount{family, 1})
	}
	if out.repeatExample == "" {
		out.repeatExample = describeSample(s)
	}
	return false
}

// describeSample writes a sample's series as the page did, each label value cut to 40 bytes and the whole
// to 200: enough to find the line, without copying a huge label into the log.
func describeSample(s promtext.Sample) string {
	const maxValue, maxTotal = 40, 200
	var b strings.Builder
	b.WriteString(s.Name)
	b.WriteByte('{')
	for i, l := range s.Labels {
		if i > 0 {
			b.WriteByte(',')
		}
		v := l.Value
		if len(v) > maxValue {
			v = strings.ToValidUTF8(v[:maxValue], "") + "…"
		}
		b.WriteString(l.Name + "=" + strconv.Quote(v))
		if b.Len() > maxTotal {
			break
		}
	}
	b.WriteByte('}')
	if out := b.String(); len(out) > maxTotal {
		return strings.ToValidUTF8(out[:maxTotal], "") + "…"
	}
	return b.String()
}

// usable reports whether a sample value can be passed on; NaN and ±Inf are counted per family and dropped.
// An engine writes NaN for "no value yet" and +Inf for a division by zero (a rate before the first request);
// neither is a measurement, and an infinite gauge or counter breaks every sum and rate downstream.
func (out *conversion) usable(family string, v float64) bool {
	switch {
	case math.IsNaN(v):
		out.nanDropped[family]++
		return false
	case math.IsInf(v, 0):
		out.infDropped[family]++
		return false
	}
	return true
}

// forgetAfterScrapes is how many scrapes a series may be missing before its start time is forgotten.
const forgetAfterScrapes = 5

func newConverter() *converter {
	return &converter{series: map[string]*seriesState{}, seed: maphash.MakeSeed()}
}

func (c *converter) convert(families []*promtext.Family, now pcommon.Timestamp, ms pmetric.MetricSlice) conversion {
	c.gen++
	out := conversion{nanDropped: map[string]int{}, infDropped: map[string]int{}, malformed: map[string]string{}}
	byName := make(map[string]*promtext.Family, len(families))
	for _, f := range families {
		byName[f.Name] = f
	}
	consumed := map[string]bool{} // `_created` families used as start times
	for _, f := range families {
		switch f.Type {
		case promtext.TypeCounter, promtext.TypeHistogram, promtext.TypeSummary:
			if created := createdFamily(f, byName); created != nil {
				consumed[created.Name] = true
			}
		}
	}
	for _, f := range families {
		if consumed[f.Name] || len(f.Samples) == 0 {
			continue
		}
		switch f.Type {
		case promtext.TypeCounter:
			c.counter(f, createdFamily(f, byName), now, ms, &out)
		case promtext.TypeHistogram:
			c.histogram(f, createdFamily(f, byName), now, ms, &out)
		case promtext.TypeSummary:
			c.summary(f, createdFamily(f, byName), now, ms, &out)
		default:
			c.gauge(f, now, ms, &out)
		}
	}
	for key, st := range c.series {
		// A series gone for a few scrapes is forgotten, bounding the map by what the engine exposes. One
		// missed scrape (a cut body, a NaN) must not make the series look new, and so reset, next time.
		if c.gen-st.gen > forgetAfterScrapes {
			delete(c.series, key)
		}
	}
	return out
}

// createdFamily finds the `_created` family prometheus_client writes next to a counter, histogram or
// summary (vllm:prompt_tokens_total -> vllm:prompt_tokens_created; a histogram H -> H_created).
func createdFamily(f *promtext.Family, byName map[string]*promtext.Family) *promtext.Family {
	if created := byName[strings.TrimSuffix(f.Name, "_total")+"_created"]; created != nil && created != f {
		return created
	}
	if created := byName[f.Name+"_created"]; created != nil && created != f {
		return created
	}
	return nil
}

// labelKey is a series identity independent of label order. For histograms and summaries (split) it
// leaves out the labels that split one series into samples (le, quantile); a gauge may use those names for
// its own labels.
func labelKey(name string, labels []promtext.Label, split bool) string {
	kept := make([]string, 0, len(labels))
	for _, l := range labels {
		if split && (l.Name == "le" || l.Name == "quantile") {
			continue
		}
		kept = append(kept, l.Name+"\xfe"+l.Value)
	}
	sort.Strings(kept)
	return name + "\xff" + strings.Join(kept, "\xff")
}

func createdTimes(f, created *promtext.Family, split bool) map[string]pcommon.Timestamp {
	times := map[string]pcommon.Timestamp{}
	add := func(s promtext.Sample) {
		// Positive and before 2514 (2^34 s): NaN, ±Inf and absurd values would overflow the timestamp.
		if !strings.HasSuffix(s.Name, "_created") || !(s.Value > 0 && s.Value < 1<<34) {
			return
		}
		times[labelKey("", s.Labels, split)] = pcommon.Timestamp(s.Value * 1e9)
	}
	for _, s := range f.Samples {
		add(s)
	}
	if created != nil {
		for _, s := range created.Samples {
			add(s)
		}
	}
	return times
}

func sampleTime(s promtext.Sample, now pcommon.Timestamp) pcommon.Timestamp {
	if s.HasTimestamp {
		return pcommon.Timestamp(s.TimestampMs * 1e6)
	}
	return now
}

// startFor decides a cumulative series' start time and notices resets.
func (c *converter) startFor(key string, value float64, created pcommon.Timestamp, hasCreated bool, at pcommon.Timestamp) (start pcommon.Timestamp, reset bool) {
	st, known := c.series[key]
	if !known {
		st = &seriesState{start: at}
		c.series[key] = st
	}
	switch {
	case known && value < st.last:
		reset = true
		// The restart happened after the previous scrape: start just after it, so the whole new value
		// counts and the start still differs from the old run's (a consumer sees the reset).
		st.start = st.at + 1
	case known && hasCreated && created > st.start:
		reset = true // restarted and already past the old value; the new `_created` says so
	}
	if hasCreated {
		st.start = created
	}
	st.last, st.at, st.gen = value, at, c.gen
	return st.start, reset
}

func newMetric(ms pmetric.MetricSlice, f *promtext.Family) pmetric.Metric {
	m := ms.AppendEmpty()
	m.SetName(f.Name)
	m.SetDescription(f.Help)
	return m
}

func putLabels(attrs pcommon.Map, labels []promtext.Label, split bool) {
	attrs.EnsureCapacity(len(labels))
	for _, l := range labels {
		if split && (l.Name == "le" || l.Name == "quantile") {
			continue
		}
		attrs.PutStr(l.Name, l.Value)
	}
}

func (c *converter) gauge(f *promtext.Family, now pcommon.Timestamp, ms pmetric.MetricSlice, out *conversion) {
	var m pmetric.Metric
	// Every sample becomes a point of the metric f.Name, so an untyped family's foo and foo_total lines are
	// one series too.
	seen := newSeriesSet(c.seed, f, f.Name)
	for i, s := range f.Samples {
		if !out.firstOfSeries(&seen, f.Name, i) || !out.usable(f.Name, s.Value) {
			continue
		}
		if m == (pmetric.Metric{}) {
			m = newMetric(ms, f)
			m.SetEmptyGauge()
		}
		dp := m.Gauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(sampleTime(s, now))
		dp.SetDoubleValue(s.Value)
		putLabels(dp.Attributes(), s.Labels, false)
		out.points++
	}
}

func (c *converter) counter(f, createdFam *promtext.Family, now pcommon.Timestamp, ms pmetric.MetricSlice, out *conversion) {
	created := createdTimes(f, createdFam, false)
	var m pmetric.Metric
	reset := false
	seen := newSeriesSet(c.seed, f, f.Name) // c and c_total are one series
	for i, s := range f.Samples {
		if strings.HasSuffix(s.Name, "_created") {
			continue
		}
		if !out.firstOfSeries(&seen, f.Name, i) || !out.usable(f.Name, s.Value) {
			continue
		}
		key := labelKey(f.Name, s.Labels, false)
		if m == (pmetric.Metric{}) {
			m = newMetric(ms, f)
			sum := m.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		}
		at := sampleTime(s, now)
		createdAt, hasCreated := created[labelKey("", s.Labels, false)]
		start, r := c.startFor(key, s.Value, createdAt, hasCreated, at)
		reset = reset || r
		if r {
			out.resetCount++
		}
		dp := m.Sum().DataPoints().AppendEmpty()
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(at)
		dp.SetDoubleValue(s.Value)
		putLabels(dp.Attributes(), s.Labels, false)
		out.points++
	}
	if reset {
		out.resets = append(out.resets, f.Name)
	}
}

type histSeries struct {
	labels []promtext.Label
	bounds []float64
	cumul  []float64
	count  float64
	sum    float64
	hasCnt bool
	hasSum bool
	at     pcommon.Timestamp
}

func (c *converter) histogram(f, createdFam *promtext.Family, now pcommon.Timestamp, ms pmetric.MetricSlice, out *conversion) {
	created := createdTimes(f, createdFam, true)
	series, order := c.groupSeries(f, now, out)
	var m pmetric.Metric
	reset := false
	for _, key := range order {
		h := series[key]
		if !h.hasCnt && len(h.cumul) > 0 && math.IsInf(h.bounds[len(h.bounds)-1], 1) {
			h.count, h.hasCnt = h.cumul[len(h.cumul)-1], true
		}
		if !h.hasCnt || math.IsNaN(h.count) {
			out.malformed[f.Name] = "histogram series without a count"
			continue
		}
		if math.IsInf(h.count, 0) || slices.ContainsFunc(h.cumul, func(v float64) bool { return math.IsInf(v, 0) }) {
			out.malformed[f.Name] = "histogram count or bucket is infinite"
			continue
		}
		sort.Sort(byBound{h})
		if !distinctBounds(h.bounds) {
			out.malformed[f.Name] = "histogram repeats a bucket bound (le=\"1\" and le=\"1.0\")"
			continue
		}
		counts, ok := bucketCounts(h)
		if !ok {
			out.malformed[f.Name] = "histogram buckets are not cumulative"
			continue
		}
		if m == (pmetric.Metric{}) {
			m = newMetric(ms, f)
			m.SetEmptyHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		}
		createdAt, hasCreated := created[labelKey("", h.labels, true)]
		start, r := c.startFor(f.Name+"\xff"+key, h.count, createdAt, hasCreated, h.at)
		reset = reset || r
		if r {
			out.resetCount++
		}
		dp := m.Histogram().DataPoints().AppendEmpty()
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(h.at)
		total, _ := wholeCount(h.count) // validated by bucketCounts
		dp.SetCount(total)
		// A NaN sum (no observation yet, in some clients) is left out quietly; an infinite one is said.
		if h.hasSum && !math.IsNaN(h.sum) && out.usable(f.Name, h.sum) {
			dp.SetSum(h.sum)
		}
		finite := h.bounds
		if len(finite) > 0 && math.IsInf(finite[len(finite)-1], 1) {
			finite = finite[:len(finite)-1]
		}
		dp.ExplicitBounds().FromRaw(finite)
		dp.BucketCounts().FromRaw(counts)
		putLabels(dp.Attributes(), h.labels, true)
		out.points++
	}
	if reset {
		out.resets = append(out.resets, f.Name)
	}
}

// groupSeries collects a histogram's _bucket/_count/_sum samples per label set, in order of appearance.
func (c *converter) groupSeries(f *promtext.Family, now pcommon.Timestamp, out *conversion) (map[string]*histSeries, []string) {
	return bySeries(newSeriesSet(c.seed, f, ""), f, out, func(s promtext.Sample) *histSeries { return &histSeries{labels: s.Labels, at: sampleTime(s, now)} },
		func(h *histSeries, suffix string, s promtext.Sample) {
			switch suffix {
			case "_bucket":
				le, err := leBound(s.Labels)
				if err != nil || math.IsNaN(le) || math.IsNaN(s.Value) {
					return
				}
				h.bounds = append(h.bounds, le)
				h.cumul = append(h.cumul, s.Value)
			case "_count":
				h.count, h.hasCnt = s.Value, true
			case "_sum":
				h.sum, h.hasSum = s.Value, true
			}
		})
}

// bySeries hands every sample of a histogram or summary family (its _created samples aside) to add, with the
// series it belongs to (one per label set without le/quantile, created by newSeries in order of appearance)
// and its name's suffix after the family name. A part written twice (the same bucket, _count or quantile of
// one series) is dropped after its first line.
func bySeries[S any](seen seriesSet, f *promtext.Family, out *conversion, newSeries func(promtext.Sample) *S, add func(*S, string, promtext.Sample)) (map[string]*S, []string) {
	series := map[string]*S{}
	var order []string
	for i, s := range f.Samples {
		suffix := strings.TrimPrefix(s.Name, f.Name)
		if suffix == "_created" {
			continue
		}
		if !out.firstOfSeries(&seen, f.Name, i) {
			continue
		}
		key := labelKey("", s.Labels, true)
		ser := series[key]
		if ser == nil {
			ser = newSeries(s)
			series[key] = ser
			order = append(order, key)
		}
		add(ser, suffix, s)
	}
	return series, order
}

func leBound(labels []promtext.Label) (float64, error) {
	for _, l := range labels {
		if l.Name == "le" {
			return strconv.ParseFloat(l.Value, 64)
		}
	}
	return 0, strconv.ErrSyntax
}

func distinctBounds(sorted []float64) bool {
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return false
		}
	}
	return true
}

type byBound struct{ h *histSeries }

func (b byBound) Len() int           { return len(b.h.bounds) }
func (b byBound) Less(i, j int) bool { return b.h.bounds[i] < b.h.bounds[j] }
func (b byBound) Swap(i, j int) {
	b.h.bounds[i], b.h.bounds[j] = b.h.bounds[j], b.h.bounds[i]
	b.h.cumul[i], b.h.cumul[j] = b.h.cumul[j], b.h.cumul[i]
}

// bucketCounts turns Prometheus' cumulative buckets into OTLP per-bucket counts; the last OTLP bucket
// (above the largest finite bound) takes what the count has beyond the last finite bucket. Counts are
// rounded to whole observations first, so the buckets always add up to the count.
func bucketCounts(h *histSeries) ([]uint64, bool) {
	count, ok := wholeCount(h.count)
	if !ok {
		return nil, false
	}
	counts := make([]uint64, 0, len(h.cumul)+1)
	var prev uint64
	for i, cum := range h.cumul {
		if math.IsInf(h.bounds[i], 1) {
			break
		}
		c, ok := wholeCount(cum)
		if !ok || c < prev {
			return nil, false
		}
		counts = append(counts, c-prev)
		prev = c
	}
	if count < prev {
		return nil, false
	}
	return append(counts, count-prev), true
}

// wholeCount converts an exposition count to an observation count; negative or non-finite is malformed.
func wholeCount(v float64) (uint64, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1<<62 {
		return 0, false
	}
	return uint64(math.Round(v)), true
}

func (c *converter) summary(f, createdFam *promtext.Family, now pcommon.Timestamp, ms pmetric.MetricSlice, out *conversion) {
	created := createdTimes(f, createdFam, true)
	type sumSeries struct {
		labels    []promtext.Label
		quantiles [][2]float64
		count     float64
		hasCount  bool
		sum       float64
		at        pcommon.Timestamp
	}
	series, order := bySeries(newSeriesSet(c.seed, f, ""), f, out, func(s promtext.Sample) *sumSeries { return &sumSeries{labels: s.Labels, at: sampleTime(s, now)} },
		func(ss *sumSeries, suffix string, s promtext.Sample) {
			switch suffix {
			case "":
				for _, l := range s.Labels {
					if l.Name == "quantile" {
						// A NaN quantile (no observation in the window) is left out quietly, an infinite one is said.
						if q, err := strconv.ParseFloat(l.Value, 64); err == nil && !math.IsNaN(s.Value) && out.usable(f.Name, s.Value) {
							ss.quantiles = append(ss.quantiles, [2]float64{q, s.Value})
						}
					}
				}
			case "_count":
				ss.count, ss.hasCount = s.Value, true
			case "_sum":
				ss.sum = s.Value
			}
		})
	var m pmetric.Metric
	reset := false
	for _, key := range order {
		ss := series[key]
		total, ok := wholeCount(ss.count)
		if !ok || !ss.hasCount {
			out.malformed[f.Name] = "summary series without a valid count"
			continue
		}
		if m == (pmetric.Metric{}) {
			m = newMetric(ms, f)
			m.SetEmptySummary()
		}
		createdAt, hasCreated := created[labelKey("", ss.labels, true)]
		start, r := c.startFor(f.Name+"\xff"+key, ss.count, createdAt, hasCreated, ss.at)
		reset = reset || r
		if r {
			out.resetCount++
		}
		dp := m.Summary().DataPoints().AppendEmpty()
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(ss.at)
		dp.SetCount(total)
		if !math.IsNaN(ss.sum) && out.usable(f.Name, ss.sum) {
			dp.SetSum(ss.sum)
		}
		slices.SortFunc(ss.quantiles, func(a, b [2]float64) int { return compareFloat(a[0], b[0]) })
		for _, q := range ss.quantiles {
			qv := dp.QuantileValues().AppendEmpty()
			qv.SetQuantile(q[0])
			qv.SetValue(q[1])
		}
		putLabels(dp.Attributes(), ss.labels, true)
		out.points++
	}
	if reset {
		out.resets = append(out.resets, f.Name)
	}
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
