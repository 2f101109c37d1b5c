// Package lmdeployreceiver scrapes LMDeploy's api_server: its Prometheus /metrics (lmdeploy:* families, on
// the API port). Vendor names pass through unchanged; the llm_normalize processor maps them onto the
// canonical schema.
package lmdeployreceiver

import (
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/lmdeployreceiver/internal/metadata"
)

// `lmdeploy serve api_server` listens on 23333 and mounts /metrics there, beside the OpenAI API.
const defaultEndpoint = "http://localhost:23333"

var engine = enginescrape.Engine{
	Name: schema.EngineLmdeploy,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	// The api_server mounts /metrics only while metrics are enabled: from 0.12 unless --disable-metrics,
	// before that only with --enable-metrics. Without it the path is FastAPI's 404.
	StatusHints: map[int]string{404: "LMDeploy serves /metrics only with metrics enabled (--enable-metrics before 0.12; not --disable-metrics from 0.12)"},
}

// NewFactory creates the lmdeploy receiver factory.
func NewFactory() receiver.Factory {
	return enginescrape.NewReceiverFactory(defaultEndpoint, engine)
}

// telemetry is this receiver's self-telemetry, from its metadata.yaml, for the shared scraper.
var telemetry = enginescrape.TelemetryFrom(metadata.NewTelemetryBuilder, func(tb *metadata.TelemetryBuilder) enginescrape.Telemetry {
	return enginescrape.Telemetry{
		ScrapeFailures: tb.EngineScrapeFailures, RejectedLines: tb.EngineScrapeRejectedLines,
		DroppedPoints: tb.EngineScrapeDroppedPoints, CounterResets: tb.EngineCounterResets,
	}
})
