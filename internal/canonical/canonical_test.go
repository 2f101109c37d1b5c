package canonical

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// Every canonical metric has a builder, and each builder says what the schema says, down to the bytes of
// the description.
func TestBuildersAreTheSchemas(t *testing.T) {
	s, err := schema.Default()
	require.NoError(t, err)
	require.Len(t, byName, len(s.Metrics))
	for _, def := range s.Metrics {
		b, ok := Lookup(def.Name)
		require.True(t, ok, def.Name)
		assert.Equal(t, def.Name, b.Name())
		assert.Equal(t, def.Unit, b.Unit(), def.Name)
		assert.Equal(t, def.Description, b.Description(), def.Name)
		assert.Equal(t, def.Instrument, b.Instrument(), def.Name)
	}
	_, ok := Lookup("llm.no_such_metric")
	assert.False(t, ok)
}

// Each instrument appends the data type the schema's instrument stands for, counters and histograms
// cumulative (counters monotonic), with the metric's name, unit and description, and no points.
func TestAppendSetsTypeAndIdentity(t *testing.T) {
	for _, tc := range []struct {
		builder Metric
		want    pmetric.MetricType
		check   func(t *testing.T, m pmetric.Metric)
	}{
		{LLMEngineUp, pmetric.MetricTypeGauge, func(t *testing.T, m pmetric.Metric) {
			assert.Zero(t, m.Gauge().DataPoints().Len())
		}},
		{LLMRequestRootCause, pmetric.MetricTypeSum, func(t *testing.T, m pmetric.Metric) {
			assert.True(t, m.Sum().IsMonotonic())
			assert.Equal(t, pmetric.AggregationTemporalityCumulative, m.Sum().AggregationTemporality())
			assert.Zero(t, m.Sum().DataPoints().Len())
		}},
		{LLMRequestPhaseDuration, pmetric.MetricTypeHistogram, func(t *testing.T, m pmetric.Metric) {
			assert.Equal(t, pmetric.AggregationTemporalityCumulative, m.Histogram().AggregationTemporality())
			assert.Zero(t, m.Histogram().DataPoints().Len())
		}},
	} {
		t.Run(tc.builder.Name(), func(t *testing.T) {
			ms := pmetric.NewMetricSlice()
			ms.AppendEmpty().SetName("already.there")
			for i, appendTo := range []func(pmetric.MetricSlice) pmetric.Metric{tc.builder.AppendMetric, typed(t, tc.builder)} {
				m := appendTo(ms)
				require.Equal(t, 2+i, ms.Len())
				assert.Equal(t, ms.At(1+i), m, "the returned metric is the appended one")
				assert.Equal(t, tc.builder.Name(), m.Name())
				assert.Equal(t, tc.builder.Unit(), m.Unit())
				assert.Equal(t, tc.builder.Description(), m.Description())
				assert.NotEmpty(t, m.Description())
				require.Equal(t, tc.want, m.Type())
				tc.check(t, m)
			}
		})
	}
}

// typed appends through the builder's typed AppendTo and returns the metric it appended.
func typed(t *testing.T, b Metric) func(pmetric.MetricSlice) pmetric.Metric {
	return func(ms pmetric.MetricSlice) pmetric.Metric {
		switch builder := b.(type) {
		case Gauge:
			builder.AppendTo(ms)
		case Counter:
			builder.AppendTo(ms)
		case Histogram:
			builder.AppendTo(ms)
		default:
			t.Fatalf("%s: builder of type %T", b.Name(), b)
		}
		return ms.At(ms.Len() - 1)
	}
}
