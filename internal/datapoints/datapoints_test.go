package datapoints

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

func TestEachAttributesVisitsEveryTypeInOrder(t *testing.T) {
	ms := pmetric.NewMetricSlice()
	ms.AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty().Attributes().PutStr("k", "gauge")
	sum := ms.AppendEmpty().SetEmptySum().DataPoints()
	sum.AppendEmpty().Attributes().PutStr("k", "sum1")
	sum.AppendEmpty().Attributes().PutStr("k", "sum2")
	ms.AppendEmpty().SetEmptyHistogram().DataPoints().AppendEmpty().Attributes().PutStr("k", "histogram")
	ms.AppendEmpty().SetEmptyExponentialHistogram().DataPoints().AppendEmpty().Attributes().PutStr("k", "exponential")
	ms.AppendEmpty().SetEmptySummary().DataPoints().AppendEmpty().Attributes().PutStr("k", "summary")
	ms.AppendEmpty() // empty: no points
	var seen []string
	for _, m := range ms.All() {
		EachAttributes(m, func(a pcommon.Map) {
			v, _ := a.Get("k")
			seen = append(seen, v.Str())
		})
	}
	assert.Equal(t, []string{"gauge", "sum1", "sum2", "histogram", "exponential", "summary"}, seen)
}
