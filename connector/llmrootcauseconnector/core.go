package llmrootcauseconnector

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadata"
	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/fleetstate"
	"github.com/servescope/servescope/internal/heavyhitters"
	"github.com/servescope/servescope/internal/labelcap"
	"github.com/servescope/servescope/internal/logonce"
	"github.com/servescope/servescope/internal/panicguard"
	"github.com/servescope/servescope/internal/schema"
)

// core is the state one component ID shares across its pipeline pairs: the fleet state fed by the metrics
// input, the baselines, the spans waiting for state, and the outputs. Each pipeline pair is its own instance
// in front of it; exactly one traces input and one metrics input do the work, since the collector hands every
// instance of the same input type the same data.
type core struct {
	cfg    *Config
	logger *zap.Logger
	shape  treeShape // the engines' request trees and stage slices, from the schema
	store  *fleetstate.Store
	now    func() time.Time

	mu             sync.Mutex
	tracesOut      consumer.Traces
	metricsOut     consumer.Metrics
	logsOut        consumer.Logs
	tracesInputs   []*tracesInput
	metricsInputs  []*metricsInput
	primaryTraces  *tracesInput
	primaryMetrics *metricsInput

	baselines map[string]*modelBaseline
	shares    map[string]*decayedRatio     // "t/" + tenant, "f/" + prompt family: cached share of prompt tokens
	paces     map[string]*decayedQuantiles // prompt family -> prefill seconds per prompt token
	// The tenants, prompt families and models with series and baselines of their own: the busiest recently.
	tenantSlots, familySlots, modelSlots *heavyhitters.Tracker
	bounds                               requestBounds
	work                                 map[string]*workLog
	verdicts                             map[string]*recentVerdicts // by replica
	origins                              *fifoCache[spanKey, who]
	trees                                *treeIndex
	roles                                []spanRole    // scratch for collect: each span's role in a batch
	circ                                 circumstances // scratch for explain: the request being judged
	judging                              judgeScratch  // scratch for explain: the verdict being made
	byRequest                            *fifoCache[string, namedBy]
	agg                                  *aggregator
	pending                              []*batch
	pendingN                             int
	started                              time.Time
	stop                                 chan struct{}
	done                                 sync.WaitGroup
	warned                               logonce.Set
	// draining is set once the first traces input shuts down: nothing more will arrive (its upstream has
	// stopped), every held span has gone out while all outputs still ran, and later spans are not held.
	draining bool
	// beforeJudge, when set (tests), runs before each request is judged: a way to force a fault.
	beforeJudge func(*request)

	requests metric.Int64Counter
	// byCause is the attribute option of the requests counter per root cause, made once per cause.
	byCause  map[string]metric.AddOption
	forced   metric.Int64Counter
	waiting  metric.Int64UpDownCounter
	rejected metric.Int64Counter
	guards   *panicguard.Guard
}

// batch is one ConsumeTraces call's data, held until the state after its requests' ends is known.
type batch struct {
	td       ptrace.Traces
	requests []*request
	// joined: the batch brought slices or thread spans, which may complete the tree of a held request.
	joined   bool
	deadline time.Time
	ctx      context.Context
}

func newCore(cfg *Config, set component.TelemetrySettings) (*core, error) {
	sch, err := schema.Default()
	if err != nil {
		return nil, err
	}
	c := &core{
		cfg: cfg, logger: set.Logger, shape: newTreeShape(sch), now: time.Now,
		store: fleetstate.New(fleetstate.Config{
			ReplicaKeys: cfg.ReplicaKeys, Window: cfg.StateWindow,
			MaxReplicas: cfg.MaxReplicas, MaxLabelLength: cfg.MaxLabelLength,
		}),
		baselines: map[string]*modelBaseline{}, shares: map[string]*decayedRatio{}, paces: map[string]*decayedQuantiles{},
		tenantSlots: heavyhitters.New(cfg.MaxTenants, cfg.Baseline.Window), familySlots: heavyhitters.New(cfg.MaxTenants, cfg.Baseline.Window),
		modelSlots: heavyhitters.New(cfg.MaxModels, cfg.Baseline.Window),
		bounds:     requestBounds{maxTokens: float64(cfg.MaxRequestTokens), maxSeconds: cfg.MaxRequestDuration.Seconds()},
		work:       map[string]*workLog{}, verdicts: map[string]*recentVerdicts{}, origins: newFIFOCache[spanKey, who](cfg.RequestIDCache),
		byRequest: newFIFOCache[string, namedBy](cfg.RequestIDCache),
		trees:     newTreeIndex(cfg.RequestIDCache),
	}
	telemetry, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	c.guards = panicguard.NewGuard("llm_root_cause", set.Logger, telemetry.LlmRootCauseRecoveredPanics)
	c.requests, c.forced = telemetry.LlmRootCauseRequests, telemetry.LlmRootCauseForcedSpans
	c.waiting, c.rejected = telemetry.LlmRootCauseWaitingSpans, telemetry.LlmRootCauseRejectedSpans
	return c, nil
}

// Start runs when the first of the core's instances starts (sharedcore counts them): a fresh aggregation
// and the loop that releases waiting spans and flushes the metrics.
func (c *core) Start(context.Context, component.Host) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = c.now()
	c.agg = newAggregator(c.cfg, c.started)
	c.draining = false
	c.stop = make(chan struct{})
	c.done.Add(1)
	go c.loop(c.stop)
	return nil
}

// drain runs when a started traces input shuts down; the first one sends everything held. The collector
// stops components in pipeline order, so at that moment the pipelines that send spans here have stopped and
// every pipeline this connector feeds still runs. Waiting for the last instance instead can mean sending
// into exporters that have already stopped.
func (c *core) drain(ctx context.Context) error {
	c.mu.Lock()
	if c.draining {
		c.mu.Unlock()
		return nil
	}
	c.draining = true
	c.mu.Unlock()
	// Nothing is dropped on the way out: held spans go with what is known, and the last metrics are sent.
	return errors.Join(c.release(ctx, func(*batch) bool { return true }, "shutdown"), c.flushMetrics(ctx))
}

// Shutdown runs when the last started instance stops (an instance never started, which the collector shuts
// down when another component failed to start, changes nothing): the loop stops, and when no traces input
// ever drained, the last metrics go out.
func (c *core) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.stop == nil {
		c.mu.Unlock()
		return nil
	}
	close(c.stop)
	c.stop = nil
	drained := c.draining
	c.mu.Unlock()
	c.done.Wait()
	if !drained { // no traces input ever ran: only metrics can be left
		return c.flushMetrics(ctx)
	}
	return nil
}

// unattributedGPUs keys the one warning about GPUs that belong to none of several replicas.
const unattributedGPUs = "unattributed-gpus"

// guard runs one step of a batch's handling; a panic in it is reported (counted, logged once per stage with
// its stack), so one bad input costs its batch and the connector goes on. The lock, where the caller holds
// it, stays held and is released by the caller as usual.
func (c *core) guard(stage string, fn func()) bool { return c.guards.Run(stage, fn) }

func (c *core) loop(stop <-chan struct{}) {
	defer c.done.Done()
	tick := c.cfg.MaxWait / 4
	if tick <= 0 || tick > time.Second {
		tick = time.Second
	}
	waits := time.NewTicker(tick)
	flushes := time.NewTicker(c.cfg.MetricsFlushInterval)
	defer waits.Stop()
	defer flushes.Stop()
	for {
		select {
		case <-stop:
			return
		case <-waits.C:
			now := c.now()
			c.logError(c.release(context.Background(), func(b *batch) bool { return !now.Before(b.deadline) }, "max_wait"))
		case <-flushes.C:
			c.logError(c.flushMetrics(context.Background()))
		}
	}
}

func (c *core) logError(err error) {
	if err != nil {
		c.warnOnce("downstream:"+err.Error(), "llm_root_cause could not hand data to the next component", zap.Error(err))
	}
}

// warnOnce logs msg the first time key is warned of; it needs no lock of the core. The keys come from the
// data (an error's text, a span attribute), so the set of keys said is bounded (logonce.DefaultLimit).
func (c *core) warnOnce(key, msg string, fields ...zap.Field) {
	if c.warned.First(key) {
		c.logger.Warn(msg, fields...)
	}
}

// consumeMetrics feeds the state and releases the held spans whose state is now complete.
func (c *core) consumeMetrics(ctx context.Context, md pmetric.Metrics, from *metricsInput) error {
	c.mu.Lock()
	if c.primaryMetrics == nil {
		c.primaryMetrics = from
	}
	primary := c.primaryMetrics == from
	said := c.warned.Said(unattributedGPUs)
	c.mu.Unlock()
	if !primary {
		return nil
	}
	c.guard("state", func() {
		c.store.Observe(md)
		// Said once: after that, no batch pays for the scan of every GPU.
		if said {
			return
		}
		if gpus := c.store.UnattributedGPUs(); len(gpus) > 0 {
			c.warnOnce(unattributedGPUs, "llm_root_cause: GPUs report here that belong to none of several replicas, so no request's evidence includes them; put the replica's service.instance.id on the GPU source (a resource processor, or the nvml receiver's attribution)",
				zap.Strings("gpus", gpus[:min(len(gpus), 8)]), zap.Int("count", len(gpus)))
		}
	})
	return c.release(ctx, c.readyLocked, "")
}

func (c *core) consumeTraces(ctx context.Context, td ptrace.Traces, from *tracesInput) error {
	c.mu.Lock()
	if c.primaryTraces == nil {
		c.primaryTraces = c.choosePrimaryTraces()
	}
	if c.primaryTraces != from {
		c.mu.Unlock()
		return nil
	}
	b := &batch{td: td, deadline: c.now().Add(c.cfg.MaxWait), ctx: context.WithoutCancel(ctx)}
	if !c.guard("read", func() { b.requests, b.joined = c.collect(b.ctx, td) }) {
		b.requests = nil // what was read before the fault is not trusted: the batch goes on unexplained
	}
	if len(b.requests) == 0 || c.draining || c.readyLocked(b) {
		out := c.finish(b)
		held := b.joined && len(c.pending) > 0
		c.mu.Unlock()
		err := c.emit(ctx, out)
		if held { // slices of a held request's tree may have come with this batch
			err = errors.Join(err, c.release(ctx, c.readyLocked, ""))
		}
		return err
	}
	c.pending = append(c.pending, b)
	c.pendingN += b.td.SpanCount()
	c.waiting.Add(ctx, int64(b.td.SpanCount()))
	var overflow []*batch
	for c.pendingN > c.cfg.MaxPendingSpans && len(c.pending) > 0 {
		overflow = append(overflow, c.pending[0])
		c.pendingN -= c.pending[0].td.SpanCount()
		c.pending = c.pending[1:]
	}
	outs := c.finishForced(overflow, "buffer_full")
	c.mu.Unlock()
	var errs []error
	for _, o := range outs {
		errs = append(errs, c.emit(o.ctx, o))
	}
	if b.joined {
		errs = append(errs, c.release(ctx, c.readyLocked, ""))
	}
	return errors.Join(errs...)
}

// choosePrimaryTraces prefers the instance whose output is traces, since only it may change the spans.
func (c *core) choosePrimaryTraces() *tracesInput {
	var best *tracesInput
	for _, in := range c.tracesInputs {
		if best == nil || in.rank < best.rank {
			best = in
		}
	}
	return best
}

// readyLocked: every request's replica has state (engine, and collective timings where they are reported)
// after the request's end, or waiting cannot help (no metrics
// input, max_wait zero, or a replica the state has never seen once the start-up grace of max_wait is over).
func (c *core) readyLocked(b *batch) bool {
	if c.cfg.MaxWait == 0 || c.draining {
		return true
	}
	// A request read from a span tree waits for the slices of its other processes, which export apart.
	if !c.treesSettledLocked(b) {
		return false
	}
	if len(c.metricsInputs) == 0 {
		return true
	}
	for _, r := range b.requests {
		key, known := c.store.Resolve(r.replicaKey)
		if !known {
			if c.now().Sub(c.started) < c.cfg.MaxWait {
				return false
			}
			continue
		}
		if newest, _ := c.store.Newest(key); newest < r.end {
			return false
		}
		// A replica whose nccl receiver reports: its collective batch covering the end is evidence too.
		if !c.store.CollectivesSettled(key, r.end) {
			return false
		}
	}
	return true
}

type output struct {
	ctx    context.Context
	traces ptrace.Traces
	logs   plog.Logs
	hasLog bool
}

// release sends the held batches that pick selects (called with c.mu held), oldest first.
func (c *core) release(ctx context.Context, pick func(*batch) bool, forcedReason string) error {
	c.mu.Lock()
	var keep, send []*batch
	for _, b := range c.pending {
		if pick(b) {
			send = append(send, b)
		} else {
			keep = append(keep, b)
		}
	}
	c.pending = keep
	for _, b := range send {
		c.pendingN -= b.td.SpanCount()
	}
	var outs []output
	if forcedReason != "" {
		outs = c.finishForced(send, forcedReason)
	} else {
		for _, b := range send {
			c.waiting.Add(ctx, -int64(b.td.SpanCount()))
			outs = append(outs, c.finish(b))
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, o := range outs {
		errs = append(errs, c.emit(o.ctx, o))
	}
	return errors.Join(errs...)
}

func (c *core) finishForced(bs []*batch, reason string) []output {
	var outs []output
	for _, b := range bs {
		n := int64(b.td.SpanCount())
		c.waiting.Add(b.ctx, -n)
		c.forced.Add(b.ctx, int64(len(b.requests)), metric.WithAttributes(attribute.String("reason", reason)))
		outs = append(outs, c.finish(b))
	}
	return outs
}

func (c *core) emit(ctx context.Context, o output) error {
	var errs []error
	if c.tracesOut != nil && o.traces.SpanCount() > 0 {
		errs = append(errs, c.tracesOut.ConsumeTraces(ctx, o.traces))
	}
	if c.logsOut != nil && o.hasLog {
		errs = append(errs, c.logsOut.ConsumeLogs(ctx, o.logs))
	}
	return errors.Join(errs...)
}

// collect indexes who sent what (tenants by span and by request id), adds the batch's stage slices and
// thread spans to the request trees, and reads the batch's request spans; joined is true when the batch had
// any part of a request tree.
func (c *core) collect(ctx context.Context, td ptrace.Traces) (reqs []*request, joined bool) {
	roles := c.classifyBatch(td)
	defer clear(roles) // the scratch keeps no labels of this batch alive
	joined = c.indexTrees(td, roles)
	n := 0
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		res := rss.At(i).Resource().Attributes()
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span, role := spans.At(k), &roles[n]
				n++
				w := who{tenant: c.label(lookup(c.cfg.TenantKeys, span.Attributes(), res)), family: c.label(lookup(c.cfg.PromptFamilyKeys, span.Attributes(), res))}
				if w.tenant != "" || w.family != "" {
					c.origins.put(spanKey{span.TraceID(), span.SpanID()}, w)
				}
				// Thread spans, slices and the prefill side of a disaggregated request are parts of a
				// request explained once, on its request span.
				part, tree := c.treeRequest(span, role)
				if part {
					continue
				}
				if !isEngineRequest(span) && tree == nil {
					if id := c.label(attrvalue.String(span.Attributes(), schema.AttrGenAIRequestID)); id != "" && (w.tenant != "" || w.family != "") {
						c.byRequest.put(id, namedBy{w, span.TraceID(), span.SpanID()})
					}
					continue
				}
				fields := readSpanFields(span.Attributes())
				if field := c.bounds.violation(&fields, span); field != "" {
					c.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("attribute", field)))
					c.warnOnce("bounds:"+field, "llm_root_cause: a request span is outside the bounds of one request; it goes on unexplained (said once per attribute, counted in otelcol_llm_root_cause_rejected_spans)",
						zap.String("attribute", field), zap.Int64("max_request_tokens", c.cfg.MaxRequestTokens),
						zap.Duration("max_request_duration", c.cfg.MaxRequestDuration))
					continue
				}
				r := readRequest(span, res, &fields)
				r.tree = tree
				r.own = w
				r.requestID, r.model, r.engine = c.label(r.requestID), c.label(r.model), c.label(r.engine)
				r.replicaKey = c.store.ReplicaKey(res)
				reqs = append(reqs, r)
			}
		}
	}
	return reqs, joined
}

// finish explains every request of a batch, records metrics and builds the outputs. Called with c.mu held.
// A fault while explaining costs the batch its explanations, never its spans: they go on as they came
// (possibly with some attributes written before the fault).
func (c *core) finish(b *batch) output {
	var out output
	if !c.guard("explain", func() { out = c.explain(b) }) {
		return output{ctx: b.ctx, traces: b.td}
	}
	return out
}

func (c *core) explain(b *batch) output {
	out := output{ctx: b.ctx, traces: b.td}
	if len(b.requests) == 0 {
		return out
	}
	if c.logsOut != nil {
		out.logs = plog.NewLogs()
	}
	enrichSpans := c.tracesOut != nil
	// Resolve everyone first, so contention sees the whole batch's admitted work.
	for _, r := range b.requests {
		c.readTree(r)
		c.resolve(r, enrichSpans)
		if math.IsNaN(r.queue) || r.replica == "" && r.replicaKey == "" {
			continue
		}
		wl := c.work[firstNonEmpty(r.replica, r.replicaKey)]
		if wl == nil {
			if len(c.work) >= c.cfg.MaxReplicas {
				clear(c.work)
			}
			wl = &workLog{}
			c.work[firstNonEmpty(r.replica, r.replicaKey)] = wl
		}
		wl.add(admitted{from: r.start + int64(r.queue*1e9), to: r.end, tenant: r.tenantSlot, traceID: r.span.TraceID(), spanID: r.span.SpanID()})
	}
	for _, r := range b.requests {
		// One request's circumstances at a time, in the core's scratch: judge keeps nothing of them.
		circ := &c.circ
		*circ = circumstances{limits: c.cfg.limits(r.model), usualCachedShare: math.NaN()}
		circ.state = c.store.Summarize(r.replica, r.start, r.end) // "" (no replica joined): all unknown
		circ.baseline = c.baselineFor(r.modelSlot)
		if wl := c.work[firstNonEmpty(r.replica, r.replicaKey)]; wl != nil && !math.IsNaN(r.queue) {
			circ.contention = func() (string, float64, int) {
				return wl.contention(r.tenantSlot, r.start, r.start+int64(r.queue*1e9), r.span.SpanID())
			}
		}
		circ.usualCachedShare = c.usualShare(r)
		if p := c.paces[r.familySlot]; p != nil && r.familySlot != "" {
			if v := p.quantile(0.25, c.cfg.Rules.MinCacheSamples); !math.IsNaN(v) {
				circ.familyPace = v
			}
		}
		if c.beforeJudge != nil {
			c.beforeJudge(r)
		}
		v := judge(r, circ, c.cfg, &c.judging)
		if enrichSpans {
			enrich(r, v)
		}
		c.agg.record(r, v, c.now())
		c.learn(r, v, &circ.state)
		c.requests.Add(b.ctx, 1, c.causeAttribute(v.cause))
		if v.slow && c.logsOut != nil {
			c.appendLog(out.logs, r, v)
			out.hasLog = true
		}
	}
	c.circ = circumstances{} // the last request's batch is not kept alive by the scratch
	c.judging.v, c.judging.j = verdict{}, judgement{}
	return out
}

// causeAttribute is the requests counter's attribute for a root cause. The causes are the schema's few, so
// each option is made once; the map is capped all the same.
func (c *core) causeAttribute(cause string) metric.AddOption {
	if o, ok := c.byCause[cause]; ok {
		return o
	}
	o := metric.WithAttributes(attribute.String(schema.AttrLLMRootCause, cause))
	if c.byCause == nil {
		c.byCause = map[string]metric.AddOption{}
	}
	if len(c.byCause) < maxCauseAttributes {
		c.byCause[cause] = o
	}
	return o
}

const maxCauseAttributes = 64

// resolve settles a request's replica, model, tenant and prompt family, linking it to the gateway span that
// shares its request id.
func (c *core) resolve(r *request, link bool) {
	if key, ok := c.store.Resolve(r.replicaKey); ok {
		r.replica = key
	}
	if r.model == "" || r.engine == "" {
		model, engine := c.store.Identity(r.replica)
		r.model = firstNonEmpty(r.model, model)
		r.engine = firstNonEmpty(r.engine, engine)
	}
	span := r.span
	w := r.own
	fill := func(o who) {
		w.tenant = firstNonEmpty(w.tenant, o.tenant)
		w.family = firstNonEmpty(w.family, o.family)
	}
	if !span.ParentSpanID().IsEmpty() {
		if parent, ok := c.origins.get(spanKey{span.TraceID(), span.ParentSpanID()}); ok {
			fill(parent)
		}
	}
	if r.requestID != "" {
		if gw, ok := c.byRequest.get(r.requestID); ok {
			fill(gw.who)
			if link && !(gw.traceID == span.TraceID() && gw.spanID == span.ParentSpanID()) && !alreadyLinked(span, gw) {
				l := span.Links().AppendEmpty()
				l.SetTraceID(gw.traceID)
				l.SetSpanID(gw.spanID)
				l.Attributes().PutStr(schema.AttrGenAIRequestID, r.requestID)
			}
		}
	}
	r.tenant = firstNonEmpty(w.tenant, "unknown")
	r.tenantSlot = c.tenantSlot(r.tenant)
	r.family = w.family
	r.familySlot = c.familySlot(r.family)
	r.modelSlot = c.modelSlot(r.model)
}

func alreadyLinked(span ptrace.Span, w namedBy) bool {
	for i := 0; i < span.Links().Len(); i++ {
		if l := span.Links().At(i); l.TraceID() == w.traceID && l.SpanID() == w.spanID {
			return true
		}
	}
	return false
}

// label bounds a name read from a span or a resource.
func (c *core) label(s string) string { return labelcap.Cut(s, c.cfg.MaxLabelLength) }

// otherSlot collects the tenants, prompt families and models that hold no slot of their own.
const otherSlot = "_other"

// tenantSlot is the name a tenant's metrics, baselines and contention use: its own while it is among the
// max_tenants busiest of the recent past, `_other` otherwise. A tenant that loses its place loses its state.
func (c *core) tenantSlot(t string) string {
	if t == "unknown" || t == otherSlot {
		return t
	}
	return c.tenantSlots.Place(t, c.now().UnixNano(), otherSlot, func(evicted string) {
		delete(c.shares, "t/"+evicted)
		if c.agg != nil {
			c.agg.forget(schema.AttrLLMTenant, evicted)
		}
	})
}

// familySlot is the prompt family's name for its baselines: its own while among the busiest, "" otherwise
// (a family without a place has no usual pace or share to compare with).
func (c *core) familySlot(f string) string {
	if f == "" {
		return ""
	}
	return c.familySlots.Place(f, c.now().UnixNano(), "", func(evicted string) {
		delete(c.shares, "f/"+evicted)
		delete(c.paces, evicted)
	})
}

// modelSlot is the name a model's baseline is kept under: its own while it is among the max_models
// busiest, `_other`'s otherwise. Counted once per request; a model that loses its place loses its baseline.
func (c *core) modelSlot(model string) string {
	return c.modelSlots.Place(orUnknown(model), c.now().UnixNano(), otherSlot, func(evicted string) { delete(c.baselines, evicted) })
}

// baselineFor is the baseline kept under a model slot.
func (c *core) baselineFor(slot string) *modelBaseline {
	b := c.baselines[slot]
	if b == nil {
		b = newModelBaseline(c.cfg.Baseline.HalfLife)
		c.baselines[slot] = b
	}
	return b
}

func (c *core) shareFor(key string, create bool) *decayedRatio {
	s := c.shares[key]
	if s == nil && create {
		if len(c.shares) >= 2*c.cfg.MaxTenants {
			return nil
		}
		s = newDecayedRatio(c.cfg.Baseline.HalfLife)
		c.shares[key] = s
	}
	return s
}

// usualShare is the cached share the request's prompt family usually gets, else its tenant's.
func (c *core) usualShare(r *request) float64 {
	for _, key := range []string{"f/" + r.familySlot, "t/" + r.tenantSlot} {
		if key == "f/" {
			continue
		}
		if s := c.shareFor(key, false); s != nil {
			if v := s.ratio(c.cfg.Rules.MinCacheSamples); !math.IsNaN(v) {
				return v
			}
		}
	}
	return math.NaN()
}

// learn adds a judged request to the baselines, after judging, so a request is never compared with itself.
// Only requests that were not slow are learned from, and a slow one marks its replica unhealthy for its
// lifetime, so the replica's usual levels (running batch, hit ratio) leave that time out too. Nor, while its
// replica is in an incident (see recentVerdicts), is a request learned from that shared the replica with a
// slow one: the requests that escaped the incident still ran beside it (in its batch, behind its queue),
// and the usual is what a healthy replica does.
func (c *core) learn(r *request, v verdict, st *fleetstate.Summary) {
	var recent *recentVerdicts
	if r.replica != "" {
		if recent = c.verdicts[r.replica]; recent == nil {
			if len(c.verdicts) >= c.cfg.MaxReplicas {
				clear(c.verdicts)
			}
			recent = &recentVerdicts{}
			c.verdicts[r.replica] = recent
		}
		recent.add(v.slow)
	}
	if v.slow {
		if r.replica != "" {
			c.store.MarkUnhealthy(r.replica, r.start, r.end)
		}
		return
	}
	if st.MarkedUnhealthy && recent != nil && recent.inIncident() {
		return
	}
	t := c.now().UnixNano()
	c.baselineFor(r.modelSlot).add(r, st.RunningMax, t)
	if r.familySlot != "" && r.promptTokens > 0 && !math.IsNaN(r.prefill) {
		p := c.paces[r.familySlot]
		if p == nil && len(c.paces) < c.cfg.MaxTenants {
			p = newDecayedQuantiles(c.cfg.Baseline.HalfLife)
			c.paces[r.familySlot] = p
		}
		if p != nil {
			p.add(r.prefill/r.promptTokens, t)
		}
	}
	if math.IsNaN(r.cachedTokens) || !(r.promptTokens > 0) {
		return
	}
	for _, key := range []string{"f/" + r.familySlot, "t/" + r.tenantSlot} {
		if key == "f/" {
			continue
		}
		if s := c.shareFor(key, true); s != nil {
			s.add(math.Min(r.cachedTokens, r.promptTokens), r.promptTokens, t)
		}
	}
}

func (c *core) appendLog(logs plog.Logs, r *request, v verdict) {
	rl := logs.ResourceLogs().AppendEmpty()
	r.resource.CopyTo(rl.Resource().Attributes())
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	rec := sl.LogRecords().AppendEmpty()
	rec.SetTimestamp(r.span.EndTimestamp())
	rec.SetObservedTimestamp(pcommon.NewTimestampFromTime(c.now()))
	rec.SetSeverityNumber(plog.SeverityNumberWarn)
	rec.SetSeverityText("WARN")
	rec.SetTraceID(r.span.TraceID())
	rec.SetSpanID(r.span.SpanID())
	rec.SetEventName("llm.request.slow")
	rec.Body().SetStr(v.sentence)
	a := rec.Attributes()
	a.PutStr(schema.AttrLLMRootCause, v.cause)
	if v.secondary != "" {
		a.PutStr(schema.AttrLLMRootCauseSecondary, v.secondary)
	}
	a.PutStr(schema.AttrLLMSlowReason, v.reason)
	a.PutStr(schema.AttrLLMTenant, r.tenant)
	a.PutStr(schema.AttrGenAIRequestModel, orUnknown(r.model))
	a.PutStr(schema.AttrServiceInstanceID, orUnknown(firstNonEmpty(r.replica, r.replicaKey)))
	if r.requestID != "" {
		a.PutStr(schema.AttrGenAIRequestID, r.requestID)
	}
}

func (c *core) flushMetrics(ctx context.Context) error {
	c.mu.Lock()
	if c.metricsOut == nil || c.agg == nil || c.agg.empty() {
		c.mu.Unlock()
		return nil
	}
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	c.agg.flush(c.now(), sm)
	c.mu.Unlock()
	return c.metricsOut.ConsumeMetrics(ctx, md)
}
