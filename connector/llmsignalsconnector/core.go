package llmsignalsconnector

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadata"
	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/fleetstate"
	"github.com/servescope/servescope/internal/panicguard"
	"github.com/servescope/servescope/internal/schema"
)

// core is shared by one component ID's instances (metrics → metrics, metrics → logs). The first metrics
// instance does the work: the collector hands every instance the same data.
type core struct {
	cfg    *Config
	logger *zap.Logger
	store  *fleetstate.Store

	mu         sync.Mutex
	metricsOut consumer.Metrics
	logsOut    consumer.Logs
	inputs     []*input
	primary    *input
	start      pcommon.Timestamp
	nextEval   int64 // unix ns on the data's clock; 0 until the first data
	lastEval   int64
	lastWall   time.Time
	incidents  map[incidentKey]*incident
	demand     map[string]*demand // by model pool; a pool gone from the state takes its entry with it
	usage      *usage
	costs      *costBook
	stop       chan struct{}
	done       sync.WaitGroup

	// beforeEvaluate, when set (tests), runs before each evaluation: a way to force a fault.
	beforeEvaluate func()
	guards         *panicguard.Guard
	telemetry      *metadata.TelemetryBuilder
	// The evaluations' trigger attribute, built once.
	onData, onWallClock metric.MeasurementOption
}

type incidentKey struct{ detector, replica string }

// incident is one detector's condition on one replica: streaks for the hysteresis, and the open incident.
type incident struct {
	fireStreak, clearStreak int
	open                    bool
	id                      string
	since                   int64
	evaluations             int
	last                    finding
	model                   string
}

func newCore(cfg *Config, set component.TelemetrySettings) (*core, error) {
	c := &core{
		cfg: cfg, logger: set.Logger,
		store: fleetstate.New(fleetstate.Config{
			ReplicaKeys: cfg.ReplicaKeys, Window: cfg.StateWindow, MaxReplicas: cfg.MaxReplicas,
			MaxLabelLength: cfg.MaxLabelLength,
		}),
		incidents: map[incidentKey]*incident{}, demand: map[string]*demand{}, costs: newCostBook(),
	}
	c.usage = newUsage(cfg, c.costs)
	var err error
	if c.telemetry, err = metadata.NewTelemetryBuilder(set); err != nil {
		return nil, err
	}
	c.guards = panicguard.NewGuard("llm_signals", set.Logger, c.telemetry.LlmSignalsRecoveredPanics)
	c.onData = metric.WithAttributeSet(attribute.NewSet(attribute.String("trigger", "data")))
	c.onWallClock = metric.WithAttributeSet(attribute.NewSet(attribute.String("trigger", "wall_clock")))
	return c, nil
}

// guard runs one step with c.mu held; a panic in it is reported and costs that step only (the lock is
// released by the caller as usual, so the connector goes on).
func (c *core) guard(stage string, fn func()) { c.guards.Run(stage, fn) }

// Start runs when the first of the core's instances starts (sharedcore counts them): the wall clock that
// evaluates a silent fleet.
func (c *core) Start(context.Context, component.Host) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start = pcommon.NewTimestampFromTime(time.Now())
	c.lastWall = time.Now()
	c.stop = make(chan struct{})
	c.done.Add(1)
	go c.wallClock(c.stop)
	return nil
}

// Shutdown runs when the last started instance stops (one never started, shut down after another
// component failed to start, changes nothing).
func (c *core) Shutdown(context.Context) error {
	c.mu.Lock()
	if c.stop == nil {
		c.mu.Unlock()
		return nil
	}
	close(c.stop)
	c.stop = nil
	c.mu.Unlock()
	c.done.Wait()
	return nil
}

// wallClock evaluates when no data arrives for two intervals, so a fleet that went silent still shows as
// stale instead of freezing at its last values.
func (c *core) wallClock(stop <-chan struct{}) {
	defer c.done.Done()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			c.mu.Lock()
			due := c.nextEval != 0 && now.Sub(c.lastWall) >= 2*c.cfg.Interval
			var out outputs
			if due {
				c.guard("evaluate", func() { out = c.evaluate(now.UnixNano()) })
				c.telemetry.LlmSignalsEvaluations.Add(context.Background(), 1, c.onWallClock)
			}
			c.mu.Unlock()
			if due {
				if err := c.emit(context.Background(), out); err != nil {
					c.logger.Warn("llm_signals could not hand its output on", zap.Error(err))
				}
			}
		}
	}
}

// consume feeds the state and evaluates every interval boundary the data's clock has passed.
func (c *core) consume(ctx context.Context, md pmetric.Metrics, from *input) error {
	c.mu.Lock()
	if c.primary == nil {
		c.primary = from
	}
	if c.primary != from {
		c.mu.Unlock()
		return nil
	}
	c.telemetry.LlmSignalsBatches.Add(ctx, 1)
	var newest int64
	c.guard("state", func() {
		c.store.Observe(md)
		newest = c.usage.observe(md, c.store)
	})
	var outs []outputs
	if newest > 0 {
		if c.nextEval == 0 {
			c.nextEval = newest + int64(c.cfg.Interval)
			c.lastEval = newest
		}
		// A boundary is evaluated half an interval after the data passes it: every resource of that scrape
		// cycle (engines, GPUs, the root-cause counters) has arrived by then, not only the first one.
		for c.nextEval+int64(c.cfg.Interval)/2 <= newest {
			c.guard("evaluate", func() { outs = append(outs, c.evaluate(c.nextEval)) })
			c.telemetry.LlmSignalsEvaluations.Add(ctx, 1, c.onData)
			c.nextEval += int64(c.cfg.Interval)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, o := range outs {
		errs = append(errs, c.emit(ctx, o))
	}
	return errors.Join(errs...)
}

type outputs struct {
	metrics pmetric.Metrics
	logs    plog.Logs
}

func (c *core) emit(ctx context.Context, o outputs) error {
	var errs []error
	if c.metricsOut != nil && o.metrics.DataPointCount() > 0 {
		errs = append(errs, c.metricsOut.ConsumeMetrics(ctx, o.metrics))
	}
	if c.logsOut != nil && o.logs.LogRecordCount() > 0 {
		errs = append(errs, c.logsOut.ConsumeLogs(ctx, o.logs))
	}
	err := errors.Join(errs...)
	if err != nil {
		c.telemetry.LlmSignalsOutputErrors.Add(ctx, 1)
	}
	return err
}

// evaluate runs every detector and signal at time now (unix ns). Called with c.mu held.
func (c *core) evaluate(now int64) outputs {
	c.lastWall = time.Now()
	if c.beforeEvaluate != nil {
		c.beforeEvaluate()
	}
	c.usage.sweep(now, c.cfg)
	dt := float64(now-c.lastEval) / 1e9
	c.lastEval = now
	from := now - int64(c.cfg.Interval)
	pools := map[string]*pool{}
	var views []*view
	for _, key := range c.store.Replicas() {
		v := &view{
			replica: key, now: c.store.Summarize(key, now, now), interval: c.store.Summarize(key, from, now),
			trend: c.store.Summarize(key, now-int64(c.cfg.Detectors.TrendWindow), now),
		}
		v.model = orUnknown(v.now.Model)
		v.ageSeconds = float64(now-v.now.Newest) / 1e9
		v.stale = v.ageSeconds >= c.cfg.Stale.Seconds()
		views = append(views, v)
		p := pools[v.model]
		if p == nil {
			p = &pool{model: v.model}
			pools[v.model] = p
		}
		p.views = append(p.views, v)
	}
	for _, v := range views {
		v.usage = c.usage.take(v.replica, len(views) == 1)
	}
	for model, p := range pools {
		d := c.demand[model]
		if d == nil {
			d = newDemand()
			c.demand[model] = d
		}
		p.plan(c.cfg, d, dt)
		p.rank()
		for _, v := range p.views {
			v.desired, v.poolReplicas = p.desired, p.fresh
		}
	}
	for model := range c.demand {
		if pools[model] == nil {
			delete(c.demand, model)
		}
	}
	ts := pcommon.Timestamp(now)
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	g := newGauges(sm.Metrics(), ts)
	ld := plog.NewLogs()
	for _, v := range views {
		h := healthOf(v, c.cfg)
		g.set(canonical.LLMReplicaHealthScore, h.score, schema.AttrGenAIRequestModel, v.model, schema.AttrServiceInstanceID, v.replica)
		for _, name := range slices.Sorted(maps.Keys(h.components)) {
			g.set(canonical.LLMReplicaHealthComponent, h.components[name], schema.AttrLLMHealthComponent, name,
				schema.AttrGenAIRequestModel, v.model, schema.AttrServiceInstanceID, v.replica)
		}
		p := pools[v.model]
		g.set(canonical.LLMReplicaRoutingScore, p.scores[v.replica], schema.AttrGenAIRequestModel, v.model, schema.AttrServiceInstanceID, v.replica)
		best := 0.0
		if p.bestKey == v.replica {
			best = 1
		}
		g.set(canonical.LLMReplicaRoutingRecommended, best, schema.AttrGenAIRequestModel, v.model, schema.AttrServiceInstanceID, v.replica)
		if run, capacity := v.now.RunningMax, v.now.MaxRunning; known(run, capacity) && capacity > 0 && !v.stale {
			g.set(canonical.LLMReplicaBatchUtilization, math.Min(1, run/capacity), schema.AttrGenAIRequestModel, v.model, schema.AttrServiceInstanceID, v.replica)
		}
		c.detect(v, now, ld, g)
		if dt > 0 {
			c.costs.charge(c.cfg, v, v.usage, dt)
		}
	}
	for _, model := range slices.Sorted(maps.Keys(pools)) {
		pv := &view{model: model}
		c.advance(incidentKey{tenantFairness.name, poolSubject(model)}, tenantFairness, tenantFairness.checkPool(pools[model], &c.cfg.Detectors), pv, now, ld, g)
	}
	c.costs.perRequest(g)
	for _, model := range slices.Sorted(maps.Keys(pools)) {
		p := pools[model]
		g.set(canonical.LLMPoolReplicas, float64(p.fresh), schema.AttrGenAIRequestModel, model)
		g.set(canonical.LLMPoolDesiredReplicas, float64(p.desired), schema.AttrGenAIRequestModel, model)
		for _, reason := range schema.ScaleReasonValues() {
			g.set(canonical.LLMPoolScaleReason, map[bool]float64{true: 1}[reason == p.reason], schema.AttrGenAIRequestModel, model, schema.AttrLLMScaleReason, reason)
		}
		if known(p.eta) {
			g.set(canonical.LLMPoolSaturationEta, p.eta, schema.AttrGenAIRequestModel, model)
		}
		g.set(canonical.LLMPoolForecastReplicas, float64(p.forecast), schema.AttrGenAIRequestModel, model)
	}
	c.closeVanished(views, now, ld)
	c.costs.write(sm.Metrics(), c.start, ts)
	return outputs{metrics: md, logs: ld}
}

// detect advances every replica detector's incident on one replica.
func (c *core) detect(v *view, now int64, ld plog.Logs, g *gauges) {
	for _, d := range detectors {
		c.advance(incidentKey{d.name, v.replica}, d, d.check(v, &c.cfg.Detectors), v, now, ld, g)
	}
}

// poolSubject is the incident subject of a pool-wide detector.
func poolSubject(model string) string { return "pool/" + model }

// advance moves one incident through its life: streaks for the hysteresis, then start, update or end.
func (c *core) advance(k incidentKey, d detector, f finding, v *view, now int64, ld plog.Logs, g *gauges) {
	inc := c.incidents[k]
	if inc == nil {
		if !f.fire {
			return // nothing to track: the map holds only conditions that fired
		}
		inc = &incident{}
		c.incidents[k] = inc
	}
	inc.model = v.model
	closed := false
	switch {
	case f.fire:
		inc.fireStreak++
		inc.clearStreak = 0
	case f.clear:
		inc.clearStreak++
		inc.fireStreak = 0
	default: // between the thresholds: hold
		inc.fireStreak, inc.clearStreak = 0, 0
	}
	switch {
	case !inc.open && inc.fireStreak >= c.cfg.Incidents.OpenAfter:
		inc.open, inc.since, inc.evaluations, inc.last = true, now, 0, f
		inc.id = incidentID(d.name, k.replica, now)
		c.record(ld, d, v, inc, f, schema.IncidentStateStart, now)
	case inc.open && inc.clearStreak >= c.cfg.Incidents.CloseAfter:
		inc.open = false
		closed = true
		c.record(ld, d, v, inc, f, schema.IncidentStateEnd, now)
		delete(c.incidents, k)
	case inc.open:
		inc.evaluations++
		if f.fire {
			inc.last = f
		}
		if c.cfg.Incidents.UpdateEvery > 0 && inc.evaluations%c.cfg.Incidents.UpdateEvery == 0 {
			c.record(ld, d, v, inc, inc.last, schema.IncidentStateUpdate, now)
		}
	case !inc.open && !f.fire && inc.fireStreak == 0:
		delete(c.incidents, k)
	}
	// 1 while open; 0 once, when it closes: an exporter that keeps the last value of a series (Prometheus
	// holds it for minutes) must not show a closed incident as open.
	if inc.open || closed {
		attrs := []string{schema.AttrLLMIncidentDetector, d.name, schema.AttrLLMIncidentSeverity, d.severity(), schema.AttrGenAIRequestModel, v.model}
		if v.replica != "" {
			attrs = append(attrs, schema.AttrServiceInstanceID, v.replica)
		}
		active := 1.0
		if closed {
			active = 0
		}
		g.set(canonical.LLMIncidentActive, active, attrs...)
	}
}

// closeVanished ends the incidents of replicas the state no longer holds (forgotten after the window).
func (c *core) closeVanished(views []*view, now int64, ld plog.Logs) {
	present := map[string]bool{}
	for _, v := range views {
		present[v.replica] = true
	}
	for k, inc := range c.incidents {
		if present[k.replica] || strings.HasPrefix(k.replica, "pool/") {
			continue
		}
		if inc.open {
			for _, d := range detectors {
				if d.name == k.detector {
					c.record(ld, d, &view{replica: k.replica, model: inc.model}, inc, finding{sentence: "replica no longer reported"}, schema.IncidentStateEnd, now)
				}
			}
		}
		delete(c.incidents, k)
	}
}

func incidentID(detector, replica string, since int64) string {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "%s/%s/%d", detector, replica, since)
	return fmt.Sprintf("%016x", h.Sum64())
}

// record writes one incident log record: start, update or end, with the evidence and the actions.
func (c *core) record(ld plog.Logs, d detector, v *view, inc *incident, f finding, state string, now int64) {
	rl := ld.ResourceLogs().AppendEmpty()
	if v.replica != "" {
		res := rl.Resource().Attributes()
		res.PutStr(schema.AttrServiceInstanceID, v.replica)
		// Where the replica runs (its pod, namespace, Ray cluster), as its metrics said: what to look at.
		c.store.Placement(v.replica, func(name, value string) { res.PutStr(name, value) })
	}
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	rec := sl.LogRecords().AppendEmpty()
	rec.SetTimestamp(pcommon.Timestamp(now))
	rec.SetObservedTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	rec.SetEventName("llm.incident")
	switch {
	case state == schema.IncidentStateEnd:
		rec.SetSeverityNumber(plog.SeverityNumberInfo)
		rec.SetSeverityText("INFO")
	case d.severity() == schema.IncidentSeverityCritical:
		rec.SetSeverityNumber(plog.SeverityNumberError)
		rec.SetSeverityText("ERROR")
	default:
		rec.SetSeverityNumber(plog.SeverityNumberWarn)
		rec.SetSeverityText("WARN")
	}
	body := d.name + " " + state + ": " + f.sentence
	if state == schema.IncidentStateEnd {
		subject := v.replica
		if subject == "" {
			subject = "the " + v.model + " pool"
		}
		body = fmt.Sprintf("%s on %s ended after %.0f s", d.name, subject, float64(now-inc.since)/1e9)
	}
	rec.Body().SetStr(body)
	a := rec.Attributes()
	a.PutStr(schema.AttrLLMIncidentID, inc.id)
	a.PutStr(schema.AttrLLMIncidentDetector, d.name)
	a.PutStr(schema.AttrLLMIncidentState, state)
	a.PutStr(schema.AttrLLMIncidentSeverity, d.severity())
	a.PutStr(schema.AttrGenAIRequestModel, v.model)
	if v.replica != "" {
		a.PutStr(schema.AttrServiceInstanceID, v.replica)
	}
	if state != schema.IncidentStateEnd {
		actions := a.PutEmptySlice(schema.AttrLLMIncidentActions)
		for _, act := range f.actions {
			actions.AppendEmpty().SetStr(act)
		}
		ev := a.PutEmptyMap(evidenceAttribute)
		for _, k := range slices.Sorted(maps.Keys(f.evidence)) {
			if val := f.evidence[k]; known(val) {
				ev.PutDouble(k, val)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(f.text)) {
			ev.PutStr(k, f.text[k])
		}
	}
}

// evidenceAttribute holds an incident's numbers as a map (keys per detector, listed in README.md).
const evidenceAttribute = "llm.incident.evidence"

// gauges writes one gauge metric per canonical gauge, data points appended as they come.
type gauges struct {
	ms     pmetric.MetricSlice
	ts     pcommon.Timestamp
	byName map[string]pmetric.Gauge
}

func newGauges(ms pmetric.MetricSlice, ts pcommon.Timestamp) *gauges {
	return &gauges{ms: ms, ts: ts, byName: map[string]pmetric.Gauge{}}
}

func (g *gauges) set(metric canonical.Gauge, value float64, attrs ...string) {
	if !known(value) {
		return
	}
	m, ok := g.byName[metric.Name()]
	if !ok {
		m = metric.AppendTo(g.ms)
		g.byName[metric.Name()] = m
	}
	dp := m.DataPoints().AppendEmpty()
	dp.SetTimestamp(g.ts)
	dp.SetDoubleValue(value)
	for i := 0; i+1 < len(attrs); i += 2 {
		dp.Attributes().PutStr(attrs[i], attrs[i+1])
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
