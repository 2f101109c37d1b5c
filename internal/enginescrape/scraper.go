// Package enginescrape is what every engine receiver shares: scrape one engine's Prometheus endpoint over
// HTTP with a tolerant parser, keep cumulative start times, poll the engine's version endpoint, stamp the
// replica's resource attributes and report llm.engine.up. Engine receivers only describe their engine.
package enginescrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/promtext"
	"github.com/servescope/servescope/internal/schema"
)

// Engine describes what is peculiar about one engine's endpoints.
type Engine struct {
	// Name is the value of llm.engine.name.
	Name string
	// Receiver is what the receiver of this engine says about itself in its metadata.yaml.
	Receiver Metadata
	// VersionPath is polled for llm.engine.version ("" when the engine has none).
	VersionPath string
	// ParseVersion extracts the version from the VersionPath response body.
	ParseVersion func(body []byte) (string, error)
	// StatusHints explain an HTTP status of the metrics endpoint (llama.cpp answers 501 without --metrics).
	StatusHints map[int]string
	// State are JSON runtime-state endpoints polled with every scrape.
	State []StateEndpoint
	// Spans, when set, is an endpoint of per-request records that the receiver's traces signal turns into
	// spans.
	Spans *SpanSource
	// Backends name the engines a serving system may run inside it, by the prefix of their families: a
	// scrape with such a family says its backend in llm.engine.backend (KServe's Hugging Face runtime
	// serving vLLM's vllm:* families on its own page).
	Backends []Backend
	// Tiers name the tiers of a serving system that serves one page per tier, by the prefix of the families
	// only that tier writes: a scrape with such a family says its tier in llm.serve.tier (Dynamo's frontend,
	// whose series describe the worker pool and which is therefore no replica, and its workers). The first
	// tier with a family on the page wins.
	Tiers []Tier
	// ParsePage reads the metrics page into the form the Prometheus parser gives, for an engine whose page
	// is not the exposition format (MLC LLM's tab-separated lines); nil means promtext.ParseLimit. It must
	// honour maxSamples (0: no bound) as ParseLimit does, and never fail as a whole: what it cannot read
	// goes into the Result's errors, so scraping, llm.engine.up, the warnings and the self-telemetry stay
	// the shared ones.
	ParsePage PageParser
}

// PageParser reads a metrics page; see Engine.ParsePage.
type PageParser func(body []byte, maxSamples int) promtext.Result

func (e Engine) pageParser() PageParser {
	if e.ParsePage != nil {
		return e.ParsePage
	}
	return promtext.ParseLimit
}

// Backend is an engine whose families a serving system's page carries beside its own.
type Backend struct {
	Name     string   // the value of llm.engine.backend
	Prefixes []string // family-name prefixes that mean this backend
}

// Tier is one tier of a serving system, known by the families its page carries.
type Tier struct {
	Name     string   // the value of llm.serve.tier
	Prefixes []string // family-name prefixes that mean this tier
}

// Scraper scrapes one engine endpoint. It is not safe for concurrent scrapes; the scraper controller
// calls it from one goroutine.
type Scraper struct {
	cfg       *Config
	engine    Engine
	target    target
	settings  receiver.Settings
	logger    *zap.Logger
	client    *http.Client
	problems  *problemLog
	converter *converter
	version   string
	wasUp     bool
	scrapes   uint64
	state     []*stateEndpoint
	telemetry scrapeTelemetry
	resets    resetLog
	clock     func() time.Time
}

type scrapeTelemetry struct {
	Telemetry
	attrs metric.MeasurementOption
}

// NewScraper builds a scraper for one endpoint; the HTTP client is created at Start.
func NewScraper(cfg *Config, engine Engine, settings receiver.Settings) (*Scraper, error) {
	t, err := newTarget(cfg.Endpoint, cfg.MetricsPath)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", RedactURL(cfg.Endpoint), err)
	}
	logger := settings.Logger.With(zap.String("endpoint", t.redacted))
	s := &Scraper{
		cfg: cfg, engine: engine, target: t, settings: settings, logger: logger,
		problems: newProblemLog(logger), converter: newConverter(), resets: newResetLog(), clock: time.Now,
	}
	for _, e := range engine.State {
		parse := e.Parse
		if e.NewParse != nil {
			parse = e.NewParse()
		}
		st := &stateEndpoint{StateEndpoint: e, parse: parse, base: t.baseURL, user: t.user}
		if e.BaseURL != "" {
			// Another address (Ray's dashboard) gets its own URL's credentials, never the endpoint's.
			if st.base, st.user, err = splitCredentials(e.BaseURL); err != nil {
				return nil, fmt.Errorf("state endpoint %s %q: %w", e.Name, RedactURL(e.BaseURL), err)
			}
		}
		s.state = append(s.state, st)
	}
	if err := s.initTelemetry(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Scraper) initTelemetry() error {
	if s.engine.Receiver.ScopeName == "" || s.engine.Receiver.Telemetry == nil {
		return fmt.Errorf("engine %s: its receiver gives no scope name or no self-telemetry", s.engine.Name)
	}
	t, err := s.engine.Receiver.Telemetry(s.settings.TelemetrySettings)
	if err != nil {
		return err
	}
	s.telemetry = scrapeTelemetry{Telemetry: t, attrs: metric.WithAttributeSet(attributeSet(s.settings.ID, s.engine.Name, s.target.instance))}
	return nil
}

// Start creates the HTTP client (TLS, auth and headers come from confighttp).
func (s *Scraper) Start(ctx context.Context, host component.Host) error {
	client, err := s.cfg.ToClient(ctx, host.GetExtensions(), s.settings.TelemetrySettings)
	if err != nil {
		return fmt.Errorf("%s: building HTTP client: %w", s.target.metricsURL, err)
	}
	s.client = client
	return nil
}

// Shutdown releases idle connections.
func (s *Scraper) Shutdown(context.Context) error {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	return nil
}

// Scrape fetches and converts one scrape. It never returns an error for an engine problem: an unreachable or
// broken engine is data (llm.engine.up = 0) and is logged once, not on every scrape.
func (s *Scraper) Scrape(ctx context.Context) (pmetric.Metrics, error) {
	defer s.problems.endScrape()
	now := pcommon.NewTimestampFromTime(s.clock())
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(s.engine.Receiver.ScopeName)
	sm.Scope().SetVersion(s.settings.BuildInfo.Version)

	up, answered := s.scrapeMetrics(ctx, now, sm.Metrics())
	s.scrapes++
	// At first contact and after every outage (a restart may have upgraded the engine); while the version
	// endpoint fails, every 30th scrape rather than every scrape.
	if up && (!s.wasUp || (s.version == "" && s.scrapes%30 == 0)) {
		s.refreshVersion(ctx)
	}
	s.wasUp = up
	if answered { // an engine that answers without Prometheus series may still serve its standalone state
		s.pollState(ctx, now, sm.Metrics(), rm.Resource().Attributes(), up)
	}
	s.fillResource(rm.Resource().Attributes(), s.backend(sm.Metrics()), s.tier(sm.Metrics()))
	appendUp(sm.Metrics(), up, now)
	if !up {
		s.telemetry.ScrapeFailures.Add(ctx, 1, s.telemetry.attrs)
	}
	return md, nil
}

// scrapeMetrics reports up (the Prometheus endpoint returned series) and answered (the engine answered
// over HTTP at all, with series or an error status).
func (s *Scraper) scrapeMetrics(ctx context.Context, now pcommon.Timestamp, ms pmetric.MetricSlice) (up, answered bool) {
	body, contentType, err := s.fetch(ctx, s.target.metricsURL, s.target.user, s.cfg.MaxBodySize)
	var status statusError
	switch {
	case errors.As(err, &status):
		fields := []zap.Field{zap.Int("status", status.code), zap.String("content_type", contentType)}
		if hint := s.engine.StatusHints[status.code]; hint != "" {
			fields = append(fields, zap.String("hint", hint))
		}
		s.problems.report(problemHTTPStatus, "Engine metrics endpoint answered with an error status; llm.engine.up=0 until it recovers", fields...)
		return false, true
	case errors.Is(err, errBodyTooLarge):
		s.problems.report(problemTooLarge, "Engine metrics body exceeds max_body_size; parsing only the first max_body_size bytes",
			zap.Int64("max_body_size", s.cfg.MaxBodySize))
	case err != nil:
		s.problems.report(problemUnreachable, "Engine metrics endpoint unreachable; llm.engine.up=0, retrying every collection_interval",
			zap.Error(err))
		return false, false
	}

	parsed := s.engine.pageParser()(body, s.cfg.SampleLimit)
	if parsed.OverLimit {
		// Rejected whole, as Prometheus does: a page cut at an arbitrary series would make sums and ratios
		// lie, and the parser stopped at the limit, so a huge page costs only sample_limit samples.
		s.problems.report(problemSampleLimit, "Engine metrics exceed sample_limit; the whole scrape is rejected and llm.engine.up=0 "+
			"until a scrape is back under it (raise sample_limit, or 0 for none, if the page is meant to be this large)",
			zap.Int("sample_limit", s.cfg.SampleLimit), zap.Int("samples", parsed.Samples), zap.Int("bytes", len(body)))
		return false, true
	}
	if parsed.ErrorCount > 0 {
		s.telemetry.RejectedLines.Add(ctx, int64(parsed.ErrorCount), s.telemetry.attrs)
	}
	if len(parsed.Families) == 0 {
		fields := []zap.Field{zap.String("content_type", contentType), zap.Int("bytes", len(body))}
		if len(parsed.Errors) > 0 {
			fields = append(fields, zap.String("first_error", parsed.Errors[0].Error()))
		}
		s.problems.report(problemNoSeries, "Engine metrics endpoint returned no Prometheus series (not the exposition format?); llm.engine.up=0", fields...)
		return false, true
	}
	if parsed.ErrorCount > 0 {
		s.problems.report(problemBadLines, "Skipped unparseable lines in the engine's metrics; the other series are kept",
			zap.Int("skipped_lines", parsed.ErrorCount), zap.String("first_error", parsed.Errors[0].Error()))
	}

	conv := s.converter.convert(parsed.Families, now, ms)
	for family, n := range conv.nanDropped {
		s.telemetry.DroppedPoints.Add(ctx, int64(n), s.telemetry.attrs)
		s.problems.report("nan:"+family, "Dropped NaN samples; the engine has no value for them yet", zap.String("family", family), zap.Int("samples", n))
	}
	for family, n := range conv.infDropped {
		s.telemetry.DroppedPoints.Add(ctx, int64(n), s.telemetry.attrs)
		s.problems.report("inf:"+family, "Dropped infinite samples (+Inf or -Inf); they are no measurement and would break sums and rates",
			zap.String("family", family), zap.Int("samples", n))
	}
	for family, why := range conv.malformed {
		s.telemetry.DroppedPoints.Add(ctx, 1, s.telemetry.attrs)
		s.problems.report("malformed:"+family, "Dropped a malformed series", zap.String("family", family), zap.String("reason", why))
	}
	if len(conv.repeats) > 0 {
		families, total := make([]string, 0, len(conv.repeats)), 0
		for _, r := range conv.repeats {
			if len(families) < maxListedFamilies {
				families = append(families, r.family)
			}
			total += r.n
		}
		s.telemetry.DroppedPoints.Add(ctx, int64(total), s.telemetry.attrs)
		s.problems.report(problemRepeatedSeries, "Dropped repeated series: the page writes some series more than once; the first line of each is kept",
			zap.Strings("families", families), zap.Int("samples", total), zap.String("first", conv.repeatExample))
	}
	if conv.resetCount > 0 {
		s.telemetry.CounterResets.Add(ctx, int64(conv.resetCount), s.telemetry.attrs)
	}
	s.resets.note(s.logger, conv.resets, s.clock())
	return true, true
}

// maxListedFamilies bounds the families a log line lists; a page can have thousands.
const maxListedFamilies = 20

var errBodyTooLarge = errors.New("body exceeds max_body_size")

type statusError struct{ code int }

func (e statusError) Error() string { return "HTTP " + strconv.Itoa(e.code) }

// fetch GETs url and returns at most limit bytes of the body. A body over the limit comes back cut at the
// limit together with errBodyTooLarge, so the caller can keep what arrived. user, when set, is sent as basic
// auth, as Go's client does for credentials in a URL; the URL itself never carries them, so no error or log
// line built from it can show the password. confighttp's `headers` and `auth` would replace the header, which
// is why Validate does not allow them together with credentials in the endpoint.
func (s *Scraper) fetch(ctx context.Context, rawURL string, user *url.Userinfo, limit int64) ([]byte, string, error) {
	if s.client == nil {
		return nil, "", errors.New("scraper not started")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, http.NoBody)
	if err != nil {
		return nil, "", err
	}
	if user != nil {
		password, _ := user.Password()
		req.SetBasicAuth(user.Username(), password)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	contentType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		return nil, contentType, statusError{resp.StatusCode}
	}
	body, err := readBody(resp, limit)
	if err != nil {
		// A connection cut mid-body still leaves the complete lines before the cut.
		body = completeLines(body)
		if len(body) == 0 {
			return nil, contentType, err
		}
		s.problems.report("read", "Engine metrics body ended early; keeping the complete lines that arrived", zap.Error(err), zap.Int("bytes", len(body)))
		return body, contentType, nil
	}
	if int64(len(body)) > limit {
		return completeLines(body[:limit]), contentType, errBodyTooLarge
	}
	return body, contentType, nil
}

// readBody reads at most limit+1 bytes (one more tells a body over the limit). io.ReadAll would grow its
// buffer step by step, allocating about twice a large body; engines send Content-Length, so the buffer is
// sized once, never beyond the limit whatever the header claims.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 {
		buf.Grow(int(min(n, limit+1)) + bytes.MinRead) // ReadFrom wants MinRead spare bytes to see the end
	}
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	return buf.Bytes(), err
}

// completeLines drops a cut-off last line: "c_total 10001" cut to "c_total 100" would parse as a valid,
// wrong value (and fake a counter reset).
func completeLines(body []byte) []byte {
	return body[:bytes.LastIndexByte(body, '\n')+1]
}

func (s *Scraper) refreshVersion(ctx context.Context) {
	if s.engine.VersionPath == "" || s.engine.ParseVersion == nil {
		return
	}
	body, _, err := s.fetch(ctx, s.target.baseURL+s.engine.VersionPath, s.target.user, 64<<10)
	if err == nil {
		var v string
		if v, err = s.engine.ParseVersion(body); err == nil {
			s.version = v
			return
		}
	}
	s.problems.report(problemVersion, "Could not read the engine version; llm.engine.version stays unset",
		zap.String("path", s.engine.VersionPath), zap.Error(err))
}

// backend names the first of the engine's backends whose families the scrape carries ("" for none).
func (s *Scraper) backend(ms pmetric.MetricSlice) string {
	for _, b := range s.engine.Backends {
		if carriesPrefix(ms, b.Prefixes) {
			return b.Name
		}
	}
	return ""
}

// tier names the first of the engine's tiers whose families the scrape carries ("" for none).
func (s *Scraper) tier(ms pmetric.MetricSlice) string {
	for _, t := range s.engine.Tiers {
		if carriesPrefix(ms, t.Prefixes) {
			return t.Name
		}
	}
	return ""
}

func carriesPrefix(ms pmetric.MetricSlice, prefixes []string) bool {
	for i := 0; i < ms.Len(); i++ {
		for _, prefix := range prefixes {
			if strings.HasPrefix(ms.At(i).Name(), prefix) {
				return true
			}
		}
	}
	return false
}

func (s *Scraper) fillResource(attrs pcommon.Map, backend, tier string) {
	attrs.PutStr(schema.AttrLLMEngineName, s.engine.Name)
	if backend != "" {
		attrs.PutStr(schema.AttrLLMEngineBackend, backend)
	}
	if tier != "" {
		attrs.PutStr(schema.AttrLLMServeTier, tier)
	}
	if s.version != "" {
		attrs.PutStr(schema.AttrLLMEngineVersion, s.version)
	}
	attrs.PutStr(schema.AttrServiceInstanceID, s.target.instance)
	attrs.PutStr(schema.AttrServerAddress, s.target.host)
	if port, err := strconv.Atoi(s.target.port); err == nil {
		attrs.PutInt(schema.AttrServerPort, int64(port))
	}
	for k, v := range s.cfg.ResourceAttributes {
		attrs.PutStr(k, v)
	}
}

func appendUp(ms pmetric.MetricSlice, up bool, now pcommon.Timestamp) {
	dp := canonical.LLMEngineUp.AppendTo(ms).DataPoints().AppendEmpty()
	dp.SetTimestamp(now)
	if up {
		dp.SetIntValue(1)
	} else {
		dp.SetIntValue(0)
	}
}
