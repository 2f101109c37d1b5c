// Package llamacppreceiver scrapes llama.cpp's llama-server: /metrics (llamacpp:* families, enabled with
// --metrics), /slots for per-slot state and context sizes, /health for readiness (503 while the model
// loads) and /props for the build. Vendor names pass through; llm_normalize maps them.
package llamacppreceiver

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/llamacppreceiver/internal/metadata"
)

// llama-server listens on 8080 by default.
const defaultEndpoint = "http://localhost:8080"

var engine = enginescrape.Engine{
	Name: schema.EngineLlamaCpp,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	VersionPath:  "/props",
	ParseVersion: parseBuild,
	StatusHints:  map[int]string{501: "llama-server serves /metrics only when started with --metrics"},
	State: []enginescrape.StateEndpoint{
		{Name: "slots", Paths: []string{"/slots"}, Parse: parseSlots},
		{Name: "health", Paths: []string{"/health"}, Health: true},
	},
}

// NewFactory creates the llama_cpp receiver factory.
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

// parseBuild reads the build from /props: `build_info` (e.g. "b6123-4a5b6c7d").
func parseBuild(body []byte) (string, error) {
	var props struct {
		BuildInfo *string `json:"build_info"`
	}
	if err := json.Unmarshal(body, &props); err != nil {
		return "", fmt.Errorf("/props: %w", err)
	}
	if props.BuildInfo == nil || *props.BuildInfo == "" {
		return "", errors.New(`/props: no "build_info" (builds before it was added do not say their version)`)
	}
	return *props.BuildInfo, nil
}

// slot is the part of a /slots entry the receiver reads. Current builds say `is_processing`; older ones
// said `state` (0 idle, 1 processing).
type slot struct {
	ID           *int   `json:"id"`
	NCtx         *int64 `json:"n_ctx"`
	IsProcessing *bool  `json:"is_processing"`
	State        *int   `json:"state"`
}

// parseSlots counts busy and idle slots and sums their context sizes (the KV capacity in tokens).
func parseSlots(body []byte, out *enginescrape.StateOutput) error {
	var slots []slot
	if err := json.Unmarshal(body, &slots); err != nil {
		return fmt.Errorf("/slots: %w", err)
	}
	var busy, idle, ctx float64
	var haveCtx bool
	for _, s := range slots {
		switch {
		case s.IsProcessing != nil && *s.IsProcessing, s.IsProcessing == nil && s.State != nil && *s.State != 0:
			busy++
		default:
			idle++
		}
		if s.NCtx != nil {
			ctx += float64(*s.NCtx)
			haveCtx = true
		}
	}
	out.Gauge(schema.MetricLLMSchedulerSlots, busy, schema.AttrLLMSlotState, "busy")
	out.Gauge(schema.MetricLLMSchedulerSlots, idle, schema.AttrLLMSlotState, "idle")
	if haveCtx {
		out.Gauge(schema.MetricLLMKVCacheCapacity, ctx)
	}
	return nil
}
