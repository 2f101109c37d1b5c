// Package metricstest reads what components emit, for tests: the data points of one metric, wherever they
// sit in the resource and scope hierarchy.
package metricstest

import "go.opentelemetry.io/collector/pdata/pmetric"

// Metrics returns every metric named name in md.
func Metrics(md pmetric.Metrics, name string) []pmetric.Metric {
	var out []pmetric.Metric
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				if ms.At(k).Name() == name {
					out = append(out, ms.At(k))
				}
			}
		}
	}
	return out
}

// Numbers returns the data points of the gauges and sums named name.
func Numbers(md pmetric.Metrics, name string) []pmetric.NumberDataPoint {
	var out []pmetric.NumberDataPoint
	for _, m := range Metrics(md, name) {
		var dps pmetric.NumberDataPointSlice
		switch m.Type() {
		case pmetric.MetricTypeGauge:
			dps = m.Gauge().DataPoints()
		case pmetric.MetricTypeSum:
			dps = m.Sum().DataPoints()
		default:
			continue
		}
		for i := 0; i < dps.Len(); i++ {
			out = append(out, dps.At(i))
		}
	}
	return out
}

// Histograms returns the data points of the histograms named name.
func Histograms(md pmetric.Metrics, name string) []pmetric.HistogramDataPoint {
	var out []pmetric.HistogramDataPoint
	for _, m := range Metrics(md, name) {
		if m.Type() != pmetric.MetricTypeHistogram {
			continue
		}
		for i := 0; i < m.Histogram().DataPoints().Len(); i++ {
			out = append(out, m.Histogram().DataPoints().At(i))
		}
	}
	return out
}
