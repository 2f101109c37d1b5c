// Package promnames says what a canonical metric is called once the collector's prometheus exporter (or
// prometheus_remote_write) has written it. The dashboards and alert rules are generated with it, so they use
// the names Prometheus actually stores.
//
// The names come from the translation those exporters run, Prometheus' otlptranslator, configured as they
// configure it by default (neither translation_strategy nor add_metric_suffixes set): names escaped to
// the classic character set and given their unit and type suffixes (UnderscoreEscapingWithSuffixes). A
// deployment that sets another strategy on its exporter gets other names than the generated dashboards use.
package promnames

import (
	"github.com/prometheus/otlptranslator"

	"github.com/servescope/servescope/internal/schema"
)

var (
	metricNamer = otlptranslator.MetricNamer{WithMetricSuffixes: true, UTF8Allowed: false}
	labelNamer  = otlptranslator.LabelNamer{UTF8Allowed: false, PreserveMultipleUnderscores: true}
)

// metricTypes are the OTLP types the distribution writes each instrument as: counters as monotonic
// cumulative sums, gauges as gauges, histograms as explicit-bucket histograms.
var metricTypes = map[schema.Instrument]otlptranslator.MetricType{
	schema.Counter:   otlptranslator.MetricTypeMonotonicCounter,
	schema.Gauge:     otlptranslator.MetricTypeGauge,
	schema.Histogram: otlptranslator.MetricTypeHistogram,
}

// Name is the metric's name in Prometheus: for histograms, the family (add _bucket, _sum, _count). It is ""
// only for a name the translation cannot carry (one of no letters or digits), which the schema's
// validation does not let in.
func Name(m *schema.Metric) string {
	name, err := metricNamer.Build(otlptranslator.Metric{Name: m.Name, Unit: m.Unit, Type: metricTypes[m.Instrument]})
	if err != nil {
		return ""
	}
	return name
}

// Label is an attribute's name as a Prometheus label; "" only for a name of no letters or digits.
func Label(attribute string) string {
	label, err := labelNamer.Build(attribute)
	if err != nil {
		return ""
	}
	return label
}
