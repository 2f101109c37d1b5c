package enginescrape

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/promtext"
)

// ExpositionToMetrics converts one exposition body the way a first scrape of it would, without HTTP and
// without resource attributes. Tests and benchmarks use it to feed real captures to downstream components.
func ExpositionToMetrics(body []byte, at time.Time) pmetric.Metrics {
	return PageToMetrics(promtext.ParseLimit, body, at)
}

// PageToMetrics is ExpositionToMetrics for a page read by an engine's own parser (Engine.ParsePage).
func PageToMetrics(parse PageParser, body []byte, at time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	newConverter().convert(parse(body, 0).Families, pcommon.NewTimestampFromTime(at), ms)
	return md
}
