// Package sglangreceiver scrapes an SGLang server: /metrics (sglang:* families; needs --enable-metrics),
// /v1/loads (older /get_load) for per-data-parallel-rank load, /server_info (older /get_server_info) for
// the version and the parallel layout, and /health. Vendor names pass through; llm_normalize maps them.
package sglangreceiver

import (
	"encoding/json"
	"fmt"
	"strconv"

	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/sglangreceiver/internal/metadata"
)

// SGLang's server listens on 30000 by default.
const defaultEndpoint = "http://localhost:30000"

var engine = enginescrape.Engine{
	Name: schema.EngineSglang,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	StatusHints: map[int]string{404: "SGLang serves /metrics only when started with --enable-metrics"},
	State: []enginescrape.StateEndpoint{
		{Name: "server_info", Paths: []string{"/server_info", "/get_server_info"}, MaxBodySize: 4 << 20, Parse: parseServerInfo},
		{Name: "loads", Paths: []string{"/v1/loads", "/get_load"}, Parse: parseLoads},
		{Name: "health", Paths: []string{"/health"}, Health: true},
	},
}

// NewFactory creates the sglang receiver factory.
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

// parseServerInfo reads the version and the parallel layout from /server_info, a flat dict of the server
// arguments plus scheduler info.
func parseServerInfo(body []byte, out *enginescrape.StateOutput) error {
	var info struct {
		Version *string `json:"version"`
		TPSize  *int    `json:"tp_size"`
		DPSize  *int    `json:"dp_size"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return fmt.Errorf("server_info: %w", err)
	}
	if info.Version != nil && *info.Version != "" {
		out.Resource(schema.AttrLLMEngineVersion, *info.Version)
	}
	if info.TPSize != nil {
		out.Resource(schema.AttrLLMParallelTpSize, strconv.Itoa(*info.TPSize))
	}
	if info.DPSize != nil {
		out.Resource(schema.AttrLLMParallelDpSize, strconv.Itoa(*info.DPSize))
	}
	return nil
}

// rankLoad holds the fields of both load endpoints: /v1/loads (GetLoadsReqOutput per DP rank) and the
// deprecated /get_load (num_reqs, num_tokens).
type rankLoad struct {
	DPRank         *int   `json:"dp_rank"`
	NumRunningReqs *int64 `json:"num_running_reqs"`
	NumWaitingReqs *int64 `json:"num_waiting_reqs"`
	NumUsedTokens  *int64 `json:"num_used_tokens"`
	// /get_load spellings.
	NumReqs   *int64 `json:"num_reqs"`
	NumTokens *int64 `json:"num_tokens"`
}

// parseLoads accepts a list of per-rank loads, or an object holding it under "loads".
func parseLoads(body []byte, out *enginescrape.StateOutput) error {
	var loads []rankLoad
	if err := json.Unmarshal(body, &loads); err != nil {
		var wrapped struct {
			Loads []rankLoad `json:"loads"`
		}
		if werr := json.Unmarshal(body, &wrapped); werr != nil {
			return fmt.Errorf("loads: %w", err)
		}
		loads = wrapped.Loads
	}
	for i, l := range loads {
		rank := strconv.Itoa(i)
		if l.DPRank != nil {
			rank = strconv.Itoa(*l.DPRank)
		}
		running := l.NumRunningReqs
		if running == nil && l.NumReqs != nil && l.NumWaitingReqs != nil {
			r := *l.NumReqs - *l.NumWaitingReqs // /get_load counts running and waiting together
			running = &r
		}
		if running != nil {
			out.Gauge(schema.MetricLLMEngineLoadRequests, float64(*running), schema.AttrLLMEngineIndex, rank, schema.AttrLLMRequestState, "running")
		}
		if l.NumWaitingReqs != nil {
			out.Gauge(schema.MetricLLMEngineLoadRequests, float64(*l.NumWaitingReqs), schema.AttrLLMEngineIndex, rank, schema.AttrLLMRequestState, "waiting")
		}
		tokens := l.NumUsedTokens
		if tokens == nil {
			tokens = l.NumTokens
		}
		if tokens != nil {
			out.Gauge(schema.MetricLLMEngineLoadTokens, float64(*tokens), schema.AttrLLMEngineIndex, rank)
		}
	}
	return nil
}
