// Package mlcllmreceiver scrapes MLC LLM's server (`mlc_llm serve`): its /metrics page, which is not the
// Prometheus exposition format but tab-separated `key value` lines (internal/mlcmetrics reads them). The
// keys pass through unchanged as metric names; the llm_normalize processor maps them onto the canonical
// schema.
//
// The keys carry no prefix (engine_prefill_time_sum, prompt_tokens_sum, ...), so only the receiver's
// llm.engine.name (mlc_llm) says an MLC LLM server wrote them, and llm_normalize maps them only under it.
package mlcllmreceiver

import (
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/mlcmetrics"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/mlcllmreceiver/internal/metadata"
)

// `mlc_llm serve` listens on 8000 and mounts /metrics beside its OpenAI-compatible API.
const defaultEndpoint = "http://localhost:8000"

var engine = enginescrape.Engine{
	Name: schema.EngineMlcLLM,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	ParsePage: mlcmetrics.Parse,
}

// NewFactory creates the mlc_llm receiver factory.
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
