package enginescrape

import (
	"errors"

	"go.opentelemetry.io/collector/component"
)

// StandInReceiver is the metadata of the engine receiver these tests stand in for (the real ones are in
// receiver/*; this package has no metadata of its own). Its self-telemetry has the names every engine
// receiver's metadata.yaml gives it. Exported for the package's external tests.
var StandInReceiver = Metadata{
	Type:             component.MustNewType("engine"),
	ScopeName:        "github.com/servescope/servescope/internal/enginescrape/standin",
	MetricsStability: component.StabilityLevelAlpha,
	TracesStability:  component.StabilityLevelBeta,
	Telemetry: func(set component.TelemetrySettings) (Telemetry, error) {
		meter := set.MeterProvider.Meter("github.com/servescope/servescope/internal/enginescrape/standin")
		var t Telemetry
		var errs [4]error
		t.ScrapeFailures, errs[0] = meter.Int64Counter("otelcol_engine_scrape_failures")
		t.RejectedLines, errs[1] = meter.Int64Counter("otelcol_engine_scrape_rejected_lines")
		t.DroppedPoints, errs[2] = meter.Int64Counter("otelcol_engine_scrape_dropped_points")
		t.CounterResets, errs[3] = meter.Int64Counter("otelcol_engine_counter_resets")
		return t, errors.Join(errs[:]...)
	},
}
