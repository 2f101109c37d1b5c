package enginescrape

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/scraper"
	"go.opentelemetry.io/collector/scraper/scraperhelper"
	"go.opentelemetry.io/otel/attribute"

	"github.com/servescope/servescope/internal/schema"
)

// NewMetricsReceiver is the whole of an engine receiver's create function: one scraper for one endpoint,
// driven by the collector's scraper controller (collection_interval, initial_delay, timeout).
func NewMetricsReceiver(set receiver.Settings, cfg *Config, engine Engine, next consumer.Metrics) (receiver.Metrics, error) {
	s, err := NewScraper(cfg, engine, set)
	if err != nil {
		return nil, err
	}
	sc, err := scraper.NewMetrics(s.Scrape, scraper.WithStart(s.Start), scraper.WithShutdown(s.Shutdown))
	if err != nil {
		return nil, err
	}
	return scraperhelper.NewMetricsController(&cfg.ControllerConfig, set, next,
		scraperhelper.AddMetricsScraper(set.ID.Type(), sc))
}

func attributeSet(id component.ID, engine, instance string) attribute.Set {
	return attribute.NewSet(
		attribute.String("receiver", id.String()),
		attribute.String(schema.AttrLLMEngineName, engine),
		attribute.String(schema.AttrServiceInstanceID, instance),
	)
}
