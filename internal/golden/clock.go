package golden

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// FixClock replaces every data point time (timestamp, start timestamp, exemplar timestamp) equal to wall
// with fixed and returns how many it replaced. A component that stamps its output with the wall clock (a
// scrape's time, the first sight of a counter without _created) is compared this way without ignoring the
// times it derives from its input: those are left as they are and compared exactly.
func FixClock(md pmetric.Metrics, wall, fixed pcommon.Timestamp) int {
	n := 0
	swap := func(get func() pcommon.Timestamp, set func(pcommon.Timestamp)) {
		if get() == wall {
			set(fixed)
			n++
		}
	}
	exemplars := func(es pmetric.ExemplarSlice) {
		for i := 0; i < es.Len(); i++ {
			e := es.At(i)
			swap(e.Timestamp, e.SetTimestamp)
		}
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					numbers(m.Gauge().DataPoints(), swap, exemplars)
				case pmetric.MetricTypeSum:
					numbers(m.Sum().DataPoints(), swap, exemplars)
				case pmetric.MetricTypeHistogram:
					dps := m.Histogram().DataPoints()
					for p := 0; p < dps.Len(); p++ {
						dp := dps.At(p)
						swap(dp.Timestamp, dp.SetTimestamp)
						swap(dp.StartTimestamp, dp.SetStartTimestamp)
						exemplars(dp.Exemplars())
					}
				case pmetric.MetricTypeExponentialHistogram:
					dps := m.ExponentialHistogram().DataPoints()
					for p := 0; p < dps.Len(); p++ {
						dp := dps.At(p)
						swap(dp.Timestamp, dp.SetTimestamp)
						swap(dp.StartTimestamp, dp.SetStartTimestamp)
						exemplars(dp.Exemplars())
					}
				case pmetric.MetricTypeSummary:
					dps := m.Summary().DataPoints()
					for p := 0; p < dps.Len(); p++ {
						dp := dps.At(p)
						swap(dp.Timestamp, dp.SetTimestamp)
						swap(dp.StartTimestamp, dp.SetStartTimestamp)
					}
				}
			}
		}
	}
	return n
}

func numbers(dps pmetric.NumberDataPointSlice, swap func(func() pcommon.Timestamp, func(pcommon.Timestamp)),
	exemplars func(pmetric.ExemplarSlice),
) {
	for p := 0; p < dps.Len(); p++ {
		dp := dps.At(p)
		swap(dp.Timestamp, dp.SetTimestamp)
		swap(dp.StartTimestamp, dp.SetStartTimestamp)
		exemplars(dp.Exemplars())
	}
}
