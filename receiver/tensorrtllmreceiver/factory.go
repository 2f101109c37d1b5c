// Package tensorrtllmreceiver scrapes TensorRT-LLM's trtllm-serve: its Prometheus endpoint
// /prometheus/metrics (trtllm_*, trtllm:* or unprefixed names across releases), /version and /health.
// Vendor names pass through; llm_normalize maps them.
//
// Not read yet: the JSON iteration statistics at /metrics (that endpoint drains on read, so a receiver
// polling it must be its only consumer), per-request /perf_metrics, and Triton's TensorRT-LLM backend.
package tensorrtllmreceiver

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
)

var componentType = component.MustNewType("tensorrt_llm")

// trtllm-serve listens on 8000 and serves Prometheus text under /prometheus/metrics (its /metrics is JSON).
const (
	defaultEndpoint = "http://localhost:8000"
	metricsPath     = "/prometheus/metrics"
)

var engine = enginescrape.Engine{
	Name:         schema.EngineTensorrtLLM,
	VersionPath:  "/version",
	ParseVersion: enginescrape.ParseVersionField,
	StatusHints:  map[int]string{404: "trtllm-serve serves /prometheus/metrics from TensorRT-LLM 1.1 on"},
	State:        []enginescrape.StateEndpoint{{Name: "health", Paths: []string{"/health"}, Health: true}},
}

// NewFactory creates the tensorrt_llm receiver factory.
func NewFactory() receiver.Factory {
	return enginescrape.NewReceiverFactoryWithPath(componentType, defaultEndpoint, metricsPath, engine)
}
