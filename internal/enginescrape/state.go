package enginescrape

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/datapoints"
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
	// NewParse, when set instead of Parse, makes one Parse per receiver: for an endpoint whose reading
	// keeps state between polls (a queue drained on read, summed into cumulative counters).
	NewParse func() func(body []byte, out *StateOutput) error
	// Health marks a health endpoint: any HTTP answer is data (200 = llm.engine.ready 1, else 0) and Parse
	// is not used.
	Health bool
	// Standalone endpoints are polled even when the Prometheus endpoint answers with an error status: the
	// engine is up and may serve them without it (trtllm-serve mounts /prometheus/metrics only with
	// return_perf_metrics, but serves its JSON iteration stats regardless).
	Standalone bool
}

type stateEndpoint struct {
	StateEndpoint
	parse   func(body []byte, out *StateOutput) error
	current int           // index into Paths of the path that answered last
	base    string        // where Paths live, without credentials
	user    *url.Userinfo // the credentials for base: the endpoint's, or those in BaseURL
}

// StateOutput collects what a state endpoint reports, under canonical names (units, descriptions and data
// types come from the schema) and resource attributes.
type StateOutput struct {
	schema   *schema.Schema
	ms       pmetric.MetricSlice
	now      pcommon.Timestamp
	byName   map[string]pmetric.Metric
	resource pcommon.Map

	// The same scrape's Prometheus families, by name, and the engine whose schema sources name them: a
	// canonical metric those families already provide is not emitted again (see provided).
	engine   string
	scraped  map[string]pmetric.Metric
	provides map[string]bool

	endpoint string
	problems *problemLog
	logger   *zap.Logger
}

// Gauge records one data point of a canonical gauge; attrs are key, value pairs.
func (o *StateOutput) Gauge(name string, value float64, attrs ...string) {
	m, ok := o.metric(name, schema.Gauge)
	if !ok {
		return
	}
	dp := m.Gauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(o.now)
	dp.SetDoubleValue(value)
	putAttributes(dp.Attributes(), attrs)
}

// Counter records one data point of a canonical counter: total is cumulative since start.
func (o *StateOutput) Counter(name string, total float64, start pcommon.Timestamp, attrs ...string) {
	m, ok := o.metric(name, schema.Counter)
	if !ok {
		return
	}
	dp := m.Sum().DataPoints().AppendEmpty()
	dp.SetStartTimestamp(start)
	dp.SetTimestamp(o.now)
	dp.SetDoubleValue(total)
	putAttributes(dp.Attributes(), attrs)
}

func putAttributes(m pcommon.Map, attrs []string) {
	for i := 0; i+1 < len(attrs); i += 2 {
		m.PutStr(attrs[i], attrs[i+1])
	}
}

// metric returns the canonical metric to add a point to, creating it on first use from its schema-generated
// builder; ok is false when the same scrape's Prometheus endpoint already provides it.
func (o *StateOutput) metric(name string, instrument schema.Instrument) (pmetric.Metric, bool) {
	builder, declared := canonical.Lookup(name)
	switch { // programming errors, which every test of the endpoint's parser finds
	case !declared:
		panic("state endpoint emits a metric the schema does not declare: " + name)
	case builder.Instrument() != instrument:
		panic(fmt.Sprintf("state endpoint writes %s as a %s, but the schema declares a %s", name, instrument, builder.Instrument()))
	}
	if m, ok := o.byName[name]; ok {
		return m, true
	}
	if o.provided(o.schema.Metric(name)) {
		return pmetric.Metric{}, false
	}
	m := builder.AppendMetric(o.ms)
	o.byName[name] = m
	return m, true
}

// provided reports whether the scrape's Prometheus families include a source the schema maps onto def for
// this engine (in any of its spellings, with or without `_total`, with a selected series for a select
// source). The engine's own Prometheus export wins: a state endpoint only fills what it lacks, so that
// llm_normalize never turns two families into one canonical name.
func (o *StateOutput) provided(def *schema.Metric) bool {
	if v, ok := o.provides[def.Name]; ok {
		return v
	}
	found := false
	if e := o.schema.Engines[o.engine]; e != nil && len(o.scraped) > 0 {
		for _, engine := range append([]string{o.engine}, e.Embeds...) {
			for _, src := range def.Sources[engine] {
				for _, spelling := range o.schema.Engines[engine].Spellings(src.Name) {
					for _, name := range []string{spelling, strings.TrimSuffix(spelling, "_total")} {
						if m, ok := o.scraped[name]; ok && selectsAny(m, src.Select) {
							found = true
						}
					}
				}
			}
		}
	}
	if o.provides == nil {
		o.provides = map[string]bool{}
	}
	o.provides[def.Name] = found
	return found
}

// selectsAny reports whether m has a series with the selected label values (any series when none are).
func selectsAny(m pmetric.Metric, selected map[string]string) bool {
	if len(selected) == 0 {
		return true
	}
	var found bool
	visit := func(attrs pcommon.Map) {
		for k, want := range selected {
			if v, ok := attrs.Get(k); !ok || v.AsString() != want {
				return
			}
		}
		found = true
	}
	datapoints.EachAttributes(m, visit)
	return found
}

// Resource sets a resource attribute of the replica.
func (o *StateOutput) Resource(key, value string) { o.resource.PutStr(key, value) }

// Now is the scrape's timestamp.
func (o *StateOutput) Now() pcommon.Timestamp { return o.now }

// Warn logs a problem of the endpoint's data once, until a poll no longer reports it: key tells problems
// apart (a gap in a drained queue, a field of the wrong type).
func (o *StateOutput) Warn(key, msg string, fields ...zap.Field) {
	if o.problems == nil {
		return
	}
	o.problems.report("state-data:"+o.endpoint+":"+key, msg, append(fields, zap.String("state", o.endpoint))...)
}

// Info logs an event worth one line each time it happens (an engine restart seen in the data).
func (o *StateOutput) Info(msg string, fields ...zap.Field) {
	if o.logger != nil {
		o.logger.Info(msg, append(fields, zap.String("state", o.endpoint))...)
	}
}

// pollState polls the state endpoints; with metricsUp false (the Prometheus endpoint answered with an
// error status) only the standalone ones.
func (s *Scraper) pollState(ctx context.Context, now pcommon.Timestamp, ms pmetric.MetricSlice, resource pcommon.Map, metricsUp bool) {
	sch, err := schema.Default()
	if err != nil {
		return
	}
	scraped := make(map[string]pmetric.Metric, ms.Len())
	for _, m := range ms.All() {
		scraped[m.Name()] = m
	}
	for _, e := range s.state {
		if !metricsUp && !e.Standalone {
			continue
		}
		out := &StateOutput{
			schema: sch, ms: ms, now: now, byName: map[string]pmetric.Metric{}, resource: resource,
			engine: s.engine.Name, scraped: scraped, endpoint: e.Name, problems: s.problems, logger: s.logger,
		}
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
		if err := e.parse(body, out); err != nil {
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
		body, _, err := s.fetch(ctx, e.base+path, e.user, limit)
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
	return &StateOutput{
		schema: sch, ms: rm.ScopeMetrics().AppendEmpty().Metrics(), now: pcommon.NewTimestampFromTime(time.Now()),
		byName: map[string]pmetric.Metric{}, resource: rm.Resource().Attributes(),
	}
}
