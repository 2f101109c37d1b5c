package enginescrape

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// fakeBuilder stands for a receiver's generated TelemetryBuilder, which TelemetryFrom only sees through the
// two functions it is given.
type fakeBuilder struct{ failures, rejected, dropped, resets metric.Int64Counter }

type fakeOption struct{}

func TestTelemetryFrom(t *testing.T) {
	meter := noop.NewMeterProvider().Meter("test")
	counter := func(name string) metric.Int64Counter {
		c, err := meter.Int64Counter(name)
		require.NoError(t, err)
		return c
	}
	built := &fakeBuilder{counter("f"), counter("r"), counter("d"), counter("c")}
	var got component.TelemetrySettings
	build := TelemetryFrom(func(set component.TelemetrySettings, _ ...fakeOption) (*fakeBuilder, error) {
		got = set
		return built, nil
	}, func(b *fakeBuilder) Telemetry {
		return Telemetry{ScrapeFailures: b.failures, RejectedLines: b.rejected, DroppedPoints: b.dropped, CounterResets: b.resets}
	})
	set := componenttest.NewNopTelemetrySettings()
	tel, err := build(set)
	require.NoError(t, err)
	assert.Equal(t, Telemetry{built.failures, built.rejected, built.dropped, built.resets}, tel)
	assert.Equal(t, set.Logger, got.Logger, "the builder gets the receiver's settings")

	broken := errors.New("no meter")
	_, err = TelemetryFrom(func(component.TelemetrySettings, ...fakeOption) (*fakeBuilder, error) {
		return nil, broken
	}, func(*fakeBuilder) Telemetry {
		t.Fatal("instruments are not picked from a builder that failed")
		return Telemetry{}
	})(set)
	require.ErrorIs(t, err, broken)
}
