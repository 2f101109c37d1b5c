// Package tensorrtllmreceiver scrapes TensorRT-LLM's trtllm-serve: its Prometheus endpoint
// /prometheus/metrics (trtllm_*, trtllm:* or unprefixed names across releases), its JSON iteration stats at
// /metrics (turned into canonical metrics here, where the Prometheus endpoint lacks them), /version and
// /health. Prometheus names pass through; llm_normalize maps them. In a traces pipeline it also reads the
// per-request records of /perf_metrics and turns each into an llm_request span like vLLM's.
//
// /metrics and /perf_metrics drain on read: the receiver must be their only consumer. Triton's
// TensorRT-LLM backend has a receiver of its own (triton).
package tensorrtllmreceiver

import (
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/tensorrtllmreceiver/internal/metadata"
)

// trtllm-serve listens on 8000 and serves Prometheus text under /prometheus/metrics (its /metrics is JSON).
const (
	defaultEndpoint = "http://localhost:8000"
	metricsPath     = "/prometheus/metrics"
)

var engine = enginescrape.Engine{
	Name: schema.EngineTensorrtLLM,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability, TracesStability: metadata.TracesStability,
		Telemetry: telemetry,
	},
	VersionPath:  "/version",
	ParseVersion: enginescrape.ParseVersionField,
	StatusHints:  map[int]string{404: "trtllm-serve serves /prometheus/metrics from TensorRT-LLM 1.1 on"},
	State: []enginescrape.StateEndpoint{
		// Up to iter_stats_max_iterations (1000 by default, unbounded when negative) iterations of about 1 KB
		// each come in one response; a cut body would lose all of them, so the bound is generous.
		{Name: "iteration_stats", Paths: []string{"/metrics"}, MaxBodySize: 64 << 20, NewParse: newIterationReader, Standalone: true},
		{Name: "health", Paths: []string{"/health"}, Health: true, Standalone: true},
	},
	Spans: &enginescrape.SpanSource{Name: "perf_metrics", New: newPerfReader},
}

// NewFactory creates the tensorrt_llm receiver factory.
func NewFactory() receiver.Factory {
	return enginescrape.NewReceiverFactoryWithPath(defaultEndpoint, metricsPath, engine)
}

// telemetry is this receiver's self-telemetry, from its metadata.yaml, for the shared scraper.
var telemetry = enginescrape.TelemetryFrom(metadata.NewTelemetryBuilder, func(tb *metadata.TelemetryBuilder) enginescrape.Telemetry {
	return enginescrape.Telemetry{
		ScrapeFailures: tb.EngineScrapeFailures, RejectedLines: tb.EngineScrapeRejectedLines,
		DroppedPoints: tb.EngineScrapeDroppedPoints, CounterResets: tb.EngineCounterResets,
	}
})
