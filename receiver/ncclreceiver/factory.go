// Package ncclreceiver reads the NCCL Inspector's output (the profiler plugin NCCL ships in
// plugins/profiler/inspector since 2.28.3, enabled by environment variables alone): its per-rank JSON
// records and its Prometheus textfiles. It emits per communicator, operation and message size the
// execution time, bandwidths and counts, the arrival skew across the ranks of each collective with the
// late rank named, each rank's place in its replica's parallel layout, and whether a replica's collective
// time is observable at all.
package ncclreceiver

import (
	"context"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"

	"github.com/servescope/servescope/receiver/ncclreceiver/internal/metadata"
)

// newLocator builds the GPU lookup; tests replace it.
type newLocator func(cfg *Config, logger *zap.Logger) gpuLocator

func realLocator(cfg *Config, logger *zap.Logger) gpuLocator {
	if cfg.GPULookup != "nvml" {
		return nil
	}
	return newNVMLLocator(nvml.New(), logger)
}

// NewFactory creates the nccl receiver factory.
func NewFactory() receiver.Factory { return newFactory(realLocator) }

func newFactory(loc newLocator) receiver.Factory {
	return receiver.NewFactory(metadata.Type, createDefaultConfig,
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			c := cfg.(*Config)
			return newReceiver(c, set, next, loc(c, set.Logger))
		}, metadata.MetricsStability))
}
