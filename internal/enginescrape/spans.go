package enginescrape

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
)

// SpanSource is an engine endpoint of per-request records that become spans (trtllm-serve's
// /perf_metrics). A receiver whose engine has one also offers a traces signal: put the receiver in a
// traces pipeline to poll it, every collection_interval.
type SpanSource struct {
	// Name identifies the source in logs.
	Name string
	// New makes one poller per receiver; it may keep state between polls (a clock offset).
	New func() SpanPoller
}

// SpanPoller reads the engine once and appends a span per record to the poll. An error is logged once
// until a poll succeeds again; spans appended before it are still delivered.
type SpanPoller func(ctx context.Context, poll *SpanPoll) error

// SpanPoll is one poll of a span source: HTTP access to the engine, where the spans go, and the
// receiver's once-per-problem log.
type SpanPoll struct {
	scraper *Scraper
	spans   ptrace.SpanSlice
	source  string
}

// Get fetches path on the engine's endpoint, reading at most limit bytes (0 means 1 MiB). An HTTP status
// other than 200 is an error that StatusCode reads.
func (p *SpanPoll) Get(ctx context.Context, path string, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = 1 << 20
	}
	body, _, err := p.scraper.fetch(ctx, p.scraper.target.baseURL+path, p.scraper.target.user, limit)
	return body, err
}

// AppendSpan adds a span to the poll's output.
func (p *SpanPoll) AppendSpan() ptrace.Span { return p.spans.AppendEmpty() }

// Warn logs a problem once, until a poll no longer reports it; key tells the source's problems apart.
func (p *SpanPoll) Warn(key, msg string, fields ...zap.Field) {
	p.scraper.problems.report("spans:"+p.source+":"+key, msg, append(fields, zap.String("spans", p.source))...)
}

// NewSpanPollForTest lets a receiver's tests and fuzz targets run a span poller's conversion without an
// engine: spans land in spans, warnings go nowhere, and Get fails.
func NewSpanPollForTest(spans ptrace.SpanSlice) *SpanPoll {
	return &SpanPoll{scraper: &Scraper{problems: newProblemLog(zap.NewNop())}, spans: spans, source: "test"}
}

// StatusCode returns the HTTP status of an error Get returned for a non-200 answer.
func StatusCode(err error) (int, bool) {
	var status statusError
	if errors.As(err, &status) {
		return status.code, true
	}
	return 0, false
}

// SpanScraper polls one engine's span source; the traces receiver drives it. Not safe for concurrent polls.
type SpanScraper struct {
	scraper *Scraper
	source  SpanSource
	poller  SpanPoller
	reached bool // the last poll reached the engine: the version is read again after every outage
}

// NewSpanScraper builds the span scraper of an engine that has a span source.
func NewSpanScraper(cfg *Config, engine Engine, settings receiver.Settings) (*SpanScraper, error) {
	if engine.Spans == nil {
		return nil, errors.New("engine " + engine.Name + " has no span source")
	}
	s, err := NewScraper(cfg, engine, settings)
	if err != nil {
		return nil, err
	}
	return &SpanScraper{scraper: s, source: *engine.Spans, poller: engine.Spans.New()}, nil
}

// Start creates the HTTP client.
func (s *SpanScraper) Start(ctx context.Context, host component.Host) error {
	return s.scraper.Start(ctx, host)
}

// Shutdown releases idle connections.
func (s *SpanScraper) Shutdown(ctx context.Context) error { return s.scraper.Shutdown(ctx) }

// Poll reads the engine once. The spans carry the same resource attributes as the receiver's metrics (the
// replica, its engine and version); an empty result has no resource spans.
func (s *SpanScraper) Poll(ctx context.Context) ptrace.Traces {
	defer s.scraper.problems.endScrape()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName(s.scraper.engine.Receiver.ScopeName)
	ss.Scope().SetVersion(s.scraper.settings.BuildInfo.Version)

	err := s.poller(ctx, &SpanPoll{scraper: s.scraper, spans: ss.Spans(), source: s.source.Name})
	_, answered := StatusCode(err)
	reached := err == nil || answered
	if reached && !s.reached {
		s.scraper.refreshVersion(ctx)
	}
	s.reached = reached
	if err != nil {
		s.scraper.problems.report("spans:"+s.source.Name, "Engine request records could not be read; retrying every collection_interval",
			zap.String("spans", s.source.Name), zap.Error(err))
	}
	if ss.Spans().Len() == 0 {
		return ptrace.NewTraces()
	}
	s.scraper.fillResource(rs.Resource().Attributes(), "", "")
	return td
}

// NewTracesReceiver polls the engine's span source every collection_interval (after initial_delay, each
// poll bounded by timeout) and hands the spans to next.
func NewTracesReceiver(set receiver.Settings, cfg *Config, engine Engine, next consumer.Traces) (receiver.Traces, error) {
	s, err := NewSpanScraper(cfg, engine, set)
	if err != nil {
		return nil, err
	}
	return &tracesReceiver{spans: s, cfg: cfg, next: next, logger: set.Logger}, nil
}

type tracesReceiver struct {
	spans  *SpanScraper
	cfg    *Config
	next   consumer.Traces
	logger *zap.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (r *tracesReceiver) Start(ctx context.Context, host component.Host) error {
	if err := r.spans.Start(ctx, host); err != nil {
		return err
	}
	loop, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go r.run(loop)
	return nil
}

func (r *tracesReceiver) run(ctx context.Context) {
	defer r.wg.Done()
	wait := r.cfg.InitialDelay
	undelivered := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = r.cfg.CollectionInterval
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if timeout := r.cfg.ControllerConfig.Timeout; timeout > 0 {
			pollCtx, cancel = context.WithTimeout(ctx, timeout)
		}
		td := r.spans.Poll(pollCtx)
		cancel()
		if td.SpanCount() == 0 {
			continue
		}
		// The records are drained from the engine: spans the pipeline refuses are lost, so say so (once
		// per episode, as the scrape problems are).
		if err := r.next.ConsumeTraces(ctx, td); err != nil {
			if !undelivered {
				r.logger.Warn("Request spans were refused by the pipeline and are lost", zap.Error(err), zap.Int("spans", td.SpanCount()))
			}
			undelivered = true
		} else {
			undelivered = false
		}
	}
}

func (r *tracesReceiver) Shutdown(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
		r.wg.Wait()
	}
	return r.spans.Shutdown(ctx)
}
