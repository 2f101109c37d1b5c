// Package dynamoreceiver scrapes NVIDIA Dynamo's two tiers: the frontend's Prometheus /metrics
// (dynamo_frontend_*: the router tier's queue, requests in flight, latencies as clients see them, and each
// model's runtime configuration) and a worker's system port (dynamo_component_*: the work handler and the
// worker's KV-cache statistics, beside its engine's own vllm:*, sglang:* or trtllm_* families). Vendor names
// pass through unchanged; the receiver says the tier in llm.serve.tier and the worker's engine in
// llm.engine.backend, and the llm_normalize processor maps the engine's families by that engine's rules.
package dynamoreceiver

import (
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/dynamoreceiver/internal/metadata"
)

// The frontend (python -m dynamo.frontend) serves its OpenAI API and /metrics on 8000. A worker serves
// /metrics on its system port, set by DYN_SYSTEM_PORT (no default port: point another receiver
// instance at it).
const defaultEndpoint = "http://localhost:8000"

var engine = enginescrape.Engine{
	Name: schema.EngineDynamo,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	// A worker's system port re-exports its engine's families under the engine's own names.
	Backends: []enginescrape.Backend{
		{Name: schema.EngineVLLM, Prefixes: []string{"vllm:"}},
		{Name: schema.EngineSglang, Prefixes: []string{"sglang:"}},
		{Name: schema.EngineTensorrtLLM, Prefixes: []string{"trtllm_"}},
	},
	// Only the frontend writes dynamo_frontend_*; a frontend with the KV router also writes
	// dynamo_component_router_*, so the frontend is tested first.
	Tiers: []enginescrape.Tier{
		{Name: schema.ServeTierFrontend, Prefixes: []string{"dynamo_frontend_"}},
		{Name: schema.ServeTierWorker, Prefixes: []string{"dynamo_component_"}},
	},
}

// NewFactory creates the dynamo receiver factory.
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
