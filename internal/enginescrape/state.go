package enginescrape

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/schema"
)

// StateEndpoint is a JSON runtime-state endpoint (llama.cpp /slots, SGLang /v1/loads, ...) polled with every
// scrape, for what the engine's Prometheus endpoint does not say.
type StateEndpoint struct {
	// Name identifies the endpoint in logs.
	Name string
	// Paths are tried in order until one answers: the current spelling first, then older ones. The path that
	// answered is kept until it stops answering.
	Paths []string
	// BaseURL is where the paths live when not on the engine's endpoint (Ray's dashboard); "" = the endpoint.
	BaseURL string
	// MaxBodySize bounds the response; 0 means 1 MiB.
	MaxBodySize int64
	// Parse turns a response into canonical metrics and resource attributes. A wrong type is an error that
	// names the field; unknown fields are ignored and missing ones are not errors.
	Parse func(body []byte, out *StateOutput) error
	// Health marks a health endpoint: any HTTP answer is data (200 = llm.engine.ready 1, else 0) and Parse
	// is not used.
	Health bool
}

type stateEndpoint struct {
	StateEndpoint
	current int // index into Paths of the path that answered last
}

// StateOutput collects what a state endpoint reports, under canonical names (units and descriptions come
// from the schema) and resource attributes.
type StateOutput struct {
	schema   *schema.Schema
	ms       pmetric.MetricSlice
	now      pcommon.Timestamp
	byName   map[string]pmetric.Metric
	resource pcommon.Map
}

// Gauge records one data point of a canonical gauge; attrs are key, value pairs.
func (o *StateOutput) Gauge(name string, value float64, attrs ...string) {
	m, ok := o.byName[name]
	if !ok {
		def := o.schema.Metric(name)
		if def == nil {
			panic("state endpoint emits a metric the schema does not declare: " + name) // a programming error
		}
		m = o.ms.AppendEmpty()
		m.SetName(name)
		m.SetUnit(def.Unit)
		m.SetDescription(def.Description)
		m.SetEmptyGauge()
		o.byName[name] = m
	}
	dp := m.Gauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(o.now)
	dp.SetDoubleValue(value)
	for i := 0; i+1 < len(attrs); i += 2 {
		dp.Attributes().PutStr(attrs[i], attrs[i+1])
	}
}

// Resource sets a resource attribute of the replica.
func (o *StateOutput) Resource(key, value string) { o.resource.PutStr(key, value) }

func (s *Scraper) pollState(ctx context.Context, now pcommon.Timestamp, ms pmetric.MetricSlice, resource pcommon.Map) {
	sch, err := schema.Default()
	if err != nil {
		return
	}
	for _, e := range s.state {
		out := &StateOutput{schema: sch, ms: ms, now: now, byName: map[string]pmetric.Metric{}, resource: resource}
		body, path, err := s.fetchState(ctx, e)
		if e.Health {
			var status statusError
			switch {
			case err == nil:
				out.Gauge(schema.MetricLLMEngineReady, 1)
				continue
			case errors.As(err, &status):
				out.Gauge(schema.MetricLLMEngineReady, 0) // loading, or unhealthy: the answer itself is the data
				continue
			}
		}
		if err != nil {
			s.problems.report("state:"+e.Name, "Engine state endpoint unavailable; its metrics are skipped until it answers",
				zap.String("state", e.Name), zap.Strings("tried", e.Paths), zap.Error(err))
			continue
		}
		if err := e.Parse(body, out); err != nil {
			s.problems.report("state-parse:"+e.Name, "Engine state response could not be read; what parsed before the error is kept",
				zap.String("path", path), zap.Error(err))
		}
	}
}

// fetchState tries the endpoint's current path, then the others; a 404 or 501 moves on to the next spelling.
func (s *Scraper) fetchState(ctx context.Context, e *stateEndpoint) ([]byte, string, error) {
	limit := e.MaxBodySize
	if limit == 0 {
		limit = 1 << 20
	}
	var errs []error
	for i := range e.Paths {
		idx := (e.current + i) % len(e.Paths)
		path := e.Paths[idx]
		base := s.target.baseURL
		if e.BaseURL != "" {
			base = strings.TrimRight(e.BaseURL, "/")
		}
		body, _, err := s.fetch(ctx, base+path, limit)
		if err == nil {
			e.current = idx
			return body, path, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
		var status statusError
		if !errors.As(err, &status) || (status.code != http.StatusNotFound && status.code != http.StatusNotImplemented) {
			break // the engine answered something else: older spellings will not help
		}
	}
	return nil, "", errors.Join(errs...)
}

// NewStateOutputForTest lets an engine receiver's tests and fuzz targets run a Parse function without a
// scrape: metrics land in rm's first scope.
func NewStateOutputForTest(rm pmetric.ResourceMetrics) *StateOutput {
	sch, _ := schema.Default()
	return &StateOutput{schema: sch, ms: rm.ScopeMetrics().AppendEmpty().Metrics(), now: pcommon.NewTimestampFromTime(time.Now()),
		byName: map[string]pmetric.Metric{}, resource: rm.Resource().Attributes()}
}
