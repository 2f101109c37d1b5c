// Package vllmreceiver scrapes a vLLM OpenAI-compatible server: its Prometheus /metrics (vllm:* families,
// and Ray Serve LLM's ray_vllm:* / ray_vllm_* re-exports) and /version for llm.engine.version.
// Vendor names pass through unchanged; the llm_normalize processor maps them onto the canonical schema.
package vllmreceiver

import (
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/vllmreceiver/internal/metadata"
)

// vLLM's OpenAI-compatible server listens on 8000 and serves /metrics and /version there.
const (
	defaultEndpoint = "http://localhost:8000"
	versionPath     = "/version"
)

var engine = enginescrape.Engine{
	Name: schema.EngineVLLM,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	VersionPath:  versionPath,
	ParseVersion: enginescrape.ParseVersionField,
}

// NewFactory creates the vllm receiver factory.
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
