// Package nimreceiver scrapes NVIDIA NIM for LLMs: its Prometheus endpoint /v1/metrics on the API port and
// /v1/version for llm.engine.version. Vendor names pass through unchanged; the llm_normalize processor maps
// them onto the canonical schema.
//
// NIM's family names carry no prefix (num_requests_running, gpu_cache_usage_perc, ...). They are vLLM V0's
// names without vllm:, and TensorRT-LLM's first release candidates wrote some of the same bare names, so a
// page cannot say which engine wrote it: the receiver's llm.engine.name (nim) decides, and llm_normalize
// maps these names only under it.
package nimreceiver

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/nimreceiver/internal/metadata"
)

// NIM for LLMs serves its OpenAI-compatible API, /v1/metrics and /v1/version on port 8000.
const (
	defaultEndpoint = "http://localhost:8000"
	metricsPath     = "/v1/metrics"
	versionPath     = "/v1/version"
)

var engine = enginescrape.Engine{
	Name: schema.EngineNim,
	Receiver: enginescrape.Metadata{
		Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
		Telemetry: telemetry,
	},
	VersionPath:  versionPath,
	ParseVersion: parseVersion,
	StatusHints:  map[int]string{404: "NIM for LLMs serves its metrics at /v1/metrics on the API port (8000); check metrics_path and the port"},
}

// NewFactory creates the nim receiver factory.
func NewFactory() receiver.Factory {
	return enginescrape.NewReceiverFactoryWithPath(defaultEndpoint, metricsPath, engine)
}

// parseVersion reads /v1/version, `{"release": "1.0.0", "api": "1.0.0"}`: the release is the NIM's version
// (api is the version of its API, which changes more rarely).
func parseVersion(body []byte) (string, error) {
	var v struct {
		Release *string `json:"release"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("version response: %w", err)
	}
	if v.Release == nil || *v.Release == "" {
		return "", errors.New(`version response: no "release" field`)
	}
	return *v.Release, nil
}

// telemetry is this receiver's self-telemetry, from its metadata.yaml, for the shared scraper.
var telemetry = enginescrape.TelemetryFrom(metadata.NewTelemetryBuilder, func(tb *metadata.TelemetryBuilder) enginescrape.Telemetry {
	return enginescrape.Telemetry{
		ScrapeFailures: tb.EngineScrapeFailures, RejectedLines: tb.EngineScrapeRejectedLines,
		DroppedPoints: tb.EngineScrapeDroppedPoints, CounterResets: tb.EngineCounterResets,
	}
})
