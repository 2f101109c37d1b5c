// Package nvmlreceiver reads NVIDIA GPUs through NVML (go-nvml): utilization averaged over the interval,
// memory, power, energy, temperature, clocks and throttle reasons, errors, PCIe and NVLink traffic, GPM
// profile metrics on Hopper and later, per-process memory and SM use attributed to engine replicas, and MIG
// instances. Without a driver or a GPU it warns once and emits nothing; the collector runs on.
package nvmlreceiver

import (
	"context"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/scraper"
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/servescope/servescope/receiver/nvmlreceiver/internal/metadata"
)

// newLibrary opens NVML; tests replace it with go-nvml's mocks.
type newLibrary func(cfg *Config) nvml.Interface

func realLibrary(cfg *Config) nvml.Interface {
	if cfg.LibraryPath != "" {
		return nvml.New(nvml.WithLibraryPath(cfg.LibraryPath))
	}
	return nvml.New()
}

// NewFactory creates the nvml receiver factory.
func NewFactory() receiver.Factory { return newFactory(realLibrary) }

func newFactory(lib newLibrary) receiver.Factory {
	return receiver.NewFactory(metadata.Type, createDefaultConfig,
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			c := cfg.(*Config)
			s, err := newGPUScraper(c, lib(c), set)
			if err != nil {
				return nil, err
			}
			sc, err := scraper.NewMetrics(s.scrape, scraper.WithStart(s.start), scraper.WithShutdown(s.shutdown))
			if err != nil {
				return nil, err
			}
			return scraperhelper.NewMetricsController(&c.ControllerConfig, set, next, scraperhelper.AddMetricsScraper(metadata.Type, sc))
		}, metadata.MetricsStability))
}

func createDefaultConfig() component.Config {
	controller := scraperhelper.NewDefaultControllerConfig()
	controller.CollectionInterval = 10 * time.Second
	return &Config{ControllerConfig: controller, ProcRoot: "/proc"}
}
