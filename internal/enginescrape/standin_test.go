package enginescrape

import "go.opentelemetry.io/collector/component"

// StandInReceiver is the metadata of the engine receiver these tests stand in for (the real ones are in
// receiver/*; this package has no metadata of its own). Exported for the package's external tests.
var StandInReceiver = Metadata{
	Type:             component.MustNewType("engine"),
	MetricsStability: component.StabilityLevelAlpha,
	TracesStability:  component.StabilityLevelBeta,
}
