// Package kservereceiver scrapes KServe's Python model server: its Prometheus /metrics on the HTTP port
// (KServe's per-step latency histograms, and with the Hugging Face runtime's vLLM backend vLLM's vllm:*
// families on the same page). Vendor names pass through unchanged; the llm_normalize processor maps them,
// the vllm:* families by vLLM's rules, as one replica whose llm.engine.name is kserve and whose
// llm.engine.backend is vllm.
package kservereceiver

import (
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/kservereceiver/internal/metadata"
)

// The model server listens on 8080 (--http_port) and serves /metrics there. With KServe's metric
// aggregation on, the queue proxy's qpext serves the same page merged with its own on 9088.
const defaultEndpoint = "http://localhost:8080"

var engine = enginescrape.Engine{
	Name: schema.EngineKserve,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	Backends: []enginescrape.Backend{{Name: schema.EngineVLLM, Prefixes: []string{"vllm:"}}},
}

// NewFactory creates the kserve receiver factory.
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
