package panicguard

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestRun(t *testing.T) {
	require.NoError(t, Run(func() {}))
	err := Run(func() {
		var s []int
		_ = s[3]
	})
	var pe *Error
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, pe.Error(), "index out of range")
	assert.Contains(t, string(pe.Stack), "panicguard_test.go")
}

// A bug every batch reaches is counted each time and logged once per stage.
func TestGuardCountsEveryPanicAndLogsOnce(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	counter, err := meter.Int64Counter("otelcol_test_recovered_panics")
	require.NoError(t, err)
	g := NewGuard("llm_test", zap.New(core), counter)
	for range 5 {
		assert.False(t, g.Run("explain", func() { panic("bug") }))
	}
	assert.True(t, g.Run("explain", func() {}))
	assert.False(t, g.Run("state", func() { panic("other bug") }))
	assert.Equal(t, 2, logs.Len(), "one line per stage")
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	byStage := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			require.Equal(t, "otelcol_test_recovered_panics", m.Name)
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				stage, _ := dp.Attributes.Value("stage")
				byStage[stage.AsString()] += dp.Value
			}
		}
	}
	assert.Equal(t, map[string]int64{"explain": 5, "state": 1}, byStage)
}
