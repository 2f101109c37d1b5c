// Package canonical writes servescope's canonical metrics. metrics.go, generated from schema/canonical.yaml,
// holds one builder per canonical metric; a builder appends the metric with the schema's name, unit,
// description and instrument, so a writer chooses none of them itself and cannot drift from the schema:
//
//	points := canonical.LLMEngineUp.AppendTo(ms).DataPoints()
//
// Counters are cumulative monotonic sums and histograms are cumulative, as every canonical metric is.
package canonical

import (
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// Metric is any canonical metric's builder, for writers that choose the metric at run time (by name from a
// table, or from the schema's rules). Writers that know the metric use its typed builder instead.
type Metric interface {
	Name() string
	Unit() string
	Description() string
	Instrument() schema.Instrument
	// AppendMetric appends the metric to ms, with its data type set and no data points.
	AppendMetric(ms pmetric.MetricSlice) pmetric.Metric
}

// Lookup returns the builder of the canonical metric with the given name.
func Lookup(name string) (Metric, bool) {
	m, ok := byName[name]
	return m, ok
}

// definition is what every builder shares: the schema's name, unit and description.
type definition struct {
	name, unit, description string
}

func (d definition) Name() string        { return d.name }
func (d definition) Unit() string        { return d.unit }
func (d definition) Description() string { return d.description }

func (d definition) appendEmpty(ms pmetric.MetricSlice) pmetric.Metric {
	m := ms.AppendEmpty()
	m.SetName(d.name)
	m.SetUnit(d.unit)
	m.SetDescription(d.description)
	return m
}

// Gauge builds a canonical gauge.
type Gauge struct{ definition }

// Instrument is schema.Gauge.
func (Gauge) Instrument() schema.Instrument { return schema.Gauge }

// AppendTo appends the gauge to ms and returns it, without data points.
func (g Gauge) AppendTo(ms pmetric.MetricSlice) pmetric.Gauge {
	return g.appendEmpty(ms).SetEmptyGauge()
}

// AppendMetric appends the gauge to ms.
func (g Gauge) AppendMetric(ms pmetric.MetricSlice) pmetric.Metric {
	m := g.appendEmpty(ms)
	m.SetEmptyGauge()
	return m
}

// Counter builds a canonical counter: a monotonic sum, cumulative since each point's start time.
type Counter struct{ definition }

// Instrument is schema.Counter.
func (Counter) Instrument() schema.Instrument { return schema.Counter }

// AppendTo appends the counter to ms and returns its sum, without data points.
func (c Counter) AppendTo(ms pmetric.MetricSlice) pmetric.Sum {
	return setCounter(c.appendEmpty(ms))
}

// AppendMetric appends the counter to ms.
func (c Counter) AppendMetric(ms pmetric.MetricSlice) pmetric.Metric {
	m := c.appendEmpty(ms)
	setCounter(m)
	return m
}

func setCounter(m pmetric.Metric) pmetric.Sum {
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return sum
}

// Histogram builds a canonical histogram, cumulative since each point's start time.
type Histogram struct{ definition }

// Instrument is schema.Histogram.
func (Histogram) Instrument() schema.Instrument { return schema.Histogram }

// AppendTo appends the histogram to ms and returns it, without data points.
func (h Histogram) AppendTo(ms pmetric.MetricSlice) pmetric.Histogram {
	return setHistogram(h.appendEmpty(ms))
}

// AppendMetric appends the histogram to ms.
func (h Histogram) AppendMetric(ms pmetric.MetricSlice) pmetric.Metric {
	m := h.appendEmpty(ms)
	setHistogram(m)
	return m
}

func setHistogram(m pmetric.Metric) pmetric.Histogram {
	hist := m.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return hist
}
