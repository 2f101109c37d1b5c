// Package tritonreceiver scrapes Triton Inference Server's metrics endpoint (port 8002): nv_inference_*
// request and duration counters, nv_gpu_* GPU gauges, and the TensorRT-LLM backend's nv_trt_llm_* families.
// Vendor names pass through; llm_normalize maps them (duration counters from microseconds to seconds).
//
// A receiver of its own rather than a mode of tensorrt_llm: Triton serves many backends, its metrics port
// and format differ from trtllm-serve's, and its TensorRT-LLM families are a backend detail within it.
package tritonreceiver

import (
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/tritonreceiver/internal/metadata"
)

// Triton serves Prometheus metrics on its metrics port, 8002 by default (HTTP API on 8000, gRPC on 8001).
const defaultEndpoint = "http://localhost:8002"

var engine = enginescrape.Engine{
	Name: schema.EngineTriton,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	StatusHints: map[int]string{404: "Triton serves metrics on its metrics port (8002) unless started with --allow-metrics=false"},
}

// NewFactory creates the triton receiver factory.
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
