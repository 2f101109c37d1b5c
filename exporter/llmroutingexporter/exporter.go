package llmroutingexporter

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/exporter/llmroutingexporter/internal/metadata"
	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/labelcap"
	"github.com/servescope/servescope/internal/panicguard"
	"github.com/servescope/servescope/internal/schema"
)

// replica is what is served about one replica. NaN: not reported.
type replica struct {
	Replica, Model, Engine          string
	Waiting, Running, KVUtilization float64
	BlockSize, NumBlocks            float64
	LoRA                            *lora
	Health, Routing                 float64
	Components                      map[string]float64
	Recommended                     bool
	EngineUpdated, SignalsUpdated   time.Time
}

type lora struct {
	Max, Running, Waiting string
	Updated               float64
}

// pool is one model's scaling signals.
type pool struct {
	Model                      string
	Desired, Current, Forecast float64
	Reason                     string
	SaturationETA              float64
	Updated                    time.Time
	// Seen is the last word about the model: this signal or the telemetry of any replica serving it.
	// A pool not Seen for pool_expiry is forgotten.
	Seen time.Time
}

// snapshot is one consistent view; readers load it atomically and never see a half-applied batch. Its
// maps are copy-on-write: a batch shares every shard of them that it does not change.
type snapshot struct {
	replicas shardedMap[*replica]
	pools    shardedMap[*pool]
}

type routingExporter struct {
	cfg    *Config
	set    exporter.Settings
	now    func() time.Time
	state  atomic.Pointer[snapshot]
	write  sync.Mutex // one writer at a time; readers never wait
	server *http.Server
	done   chan struct{}

	// Guarded by write.
	lastSweep     time.Time
	saidPoolsFull bool
	guard         *panicguard.Guard

	telemetry struct {
		batches, refusedPools, expiredPools metric.Int64Counter
		attrs                               metric.MeasurementOption
	}
}

func newRoutingExporter(cfg *Config, set exporter.Settings) (*routingExporter, error) {
	e := &routingExporter{cfg: cfg, set: set, now: time.Now}
	e.state.Store(&snapshot{})
	telemetry, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	e.telemetry.batches, e.telemetry.refusedPools, e.telemetry.expiredPools =
		telemetry.LlmRoutingBatches, telemetry.LlmRoutingRefusedPools, telemetry.LlmRoutingExpiredPools
	e.telemetry.attrs = metric.WithAttributeSet(attribute.NewSet(attribute.String("exporter", set.ID.String())))
	e.guard = panicguard.NewGuard("llm_routing", set.Logger, telemetry.LlmRoutingRecoveredPanics)
	return e, nil
}

func (e *routingExporter) start(ctx context.Context, host component.Host) error {
	ln, err := e.cfg.ToListener(ctx)
	if err != nil {
		return err
	}
	e.server, err = e.cfg.ToServer(ctx, host.GetExtensions(), e.set.TelemetrySettings, e.handler())
	if err != nil {
		_ = ln.Close()
		return err
	}
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		if err := e.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			e.set.Logger.Error("llm_routing stopped serving", zap.Error(err))
		}
	}()
	return nil
}

func (e *routingExporter) shutdown(ctx context.Context) error {
	if e.server == nil {
		return nil
	}
	err := e.server.Shutdown(ctx)
	<-e.done
	return err
}

// change is one batch being applied to the next snapshot. Every replica and pool it changes is copied the
// first time (the published ones are shared with readers), and so is every shard of the maps holding them.
type change struct {
	e              *routingExporter
	ctx            context.Context
	replicas       cowWriter[*replica]
	pools          cowWriter[*pool]
	copiedReplicas map[string]bool
	copiedPools    map[string]bool
	refusedPools   map[string]bool
	swept          bool
}

// consume applies a batch to a copy of the state and publishes the copy. An internal error part way (a bug
// some input reaches) abandons the copy: readers keep the last whole state, and the exporter goes on.
func (e *routingExporter) consume(ctx context.Context, md pmetric.Metrics) error {
	if !e.guard.Run("consume", func() { e.applyBatch(ctx, md) }) {
		return consumererror.NewPermanent(errors.New("llm_routing: internal error; the batch was not applied"))
	}
	e.telemetry.batches.Add(ctx, 1, e.telemetry.attrs)
	return nil
}

func (e *routingExporter) applyBatch(ctx context.Context, md pmetric.Metrics) {
	e.write.Lock()
	defer e.write.Unlock()
	next := *e.state.Load() // the shard arrays only: the shards themselves are copied when changed
	c := &change{
		e: e, ctx: ctx, replicas: cowWriter[*replica]{next: &next.replicas}, pools: cowWriter[*pool]{next: &next.pools},
		copiedReplicas: map[string]bool{}, copiedPools: map[string]bool{}, refusedPools: map[string]bool{},
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		res := rms.At(i).Resource().Attributes()
		engine := boundedText(res, schema.AttrLLMEngineName)
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				e.apply(ms.At(k), res, engine, c.replica, c.pool)
			}
		}
	}
	c.poolsSeenThroughReplicas()
	// Expired pools are hidden by the scale endpoint the moment they expire; sweeping them out of memory
	// once per stale period (or when a new model finds max_pools reached) is soon enough.
	if now := e.now(); !c.swept && now.Sub(e.lastSweep) >= e.cfg.Stale {
		c.expirePools(now)
	}
	e.state.Store(&next)
}

// replica returns the batch's own copy of a replica, made (or, at max_replicas, made in place of the one
// updated longest ago) if it is new.
func (c *change) replica(key string) *replica {
	r, ok := c.replicas.next.Get(key)
	switch {
	case !ok:
		if c.replicas.next.Len() >= c.e.cfg.MaxReplicas {
			forgetOldest(&c.replicas)
		}
		nan := math.NaN()
		r = &replica{Replica: key, Waiting: nan, Running: nan, KVUtilization: nan, BlockSize: nan, NumBlocks: nan, Health: nan, Routing: nan}
	case !c.copiedReplicas[key]:
		copied := *r
		copied.Components = cloneMap(r.Components)
		r = &copied
	default:
		return r
	}
	c.copiedReplicas[key] = true
	c.replicas.Set(key, r)
	return r
}

// pool returns the batch's own copy of a model's pool, or nil where the model is new and max_pools is
// reached.
//
// At the cap a new model is refused rather than the least recently updated pool evicted: the cap is hit
// when something upstream mints model names (a request id or a path in gen_ai.request.model), and with
// eviction such a flood would push out the pools of the real models, whose scale endpoints KEDA is polling,
// turning working autoscaling into 404s. Refusing keeps every pool that was being served; the junk is counted
// and said once, and a real new model gets a slot as soon as a pool expires (pool_expiry).
func (c *change) pool(model string) *pool {
	p, ok := c.pools.next.Get(model)
	switch {
	case !ok:
		if c.refusedPools[model] {
			return nil
		}
		if c.pools.next.Len() >= c.e.cfg.MaxPools && !c.swept {
			c.expirePools(c.e.now())
		}
		if c.pools.next.Len() >= c.e.cfg.MaxPools {
			c.refuse(model)
			return nil
		}
		p = &pool{Model: model, Desired: math.NaN(), Current: math.NaN(), Forecast: math.NaN(), SaturationETA: math.NaN()}
	case !c.copiedPools[model]:
		copied := *p
		p = &copied
	default:
		return p
	}
	c.copiedPools[model] = true
	c.pools.Set(model, p)
	return p
}

func (c *change) refuse(model string) {
	c.refusedPools[model] = true
	c.e.telemetry.refusedPools.Add(c.ctx, 1, c.e.telemetry.attrs)
	if !c.e.saidPoolsFull {
		c.e.saidPoolsFull = true
		c.e.set.Logger.Warn("llm_routing: max_pools reached; the scaling signals of models not seen before are dropped until a pool "+
			"expires (said once; otelcol_llm_routing_refused_pools counts them)",
			zap.Int("max_pools", c.e.cfg.MaxPools), zap.Duration("pool_expiry", c.e.cfg.PoolExpiry), zap.String("first_refused_model", model))
	}
}

// poolsSeenThroughReplicas keeps a pool alive while any replica of its model reports, even where its own
// scaling signal has stopped (the endpoint then answers 503, stale, rather than 404).
func (c *change) poolsSeenThroughReplicas() {
	for key := range c.copiedReplicas {
		r, ok := c.replicas.next.Get(key)
		if !ok || r.Model == "" {
			continue
		}
		last := r.EngineUpdated
		if r.SignalsUpdated.After(last) {
			last = r.SignalsUpdated
		}
		if p, ok := c.pools.next.Get(r.Model); ok && last.After(p.Seen) {
			c.pool(r.Model).Seen = last
		}
	}
}

// expirePools forgets the pools nothing has been said about for pool_expiry, except those this batch
// touched.
func (c *change) expirePools(now time.Time) {
	c.swept = true
	c.e.lastSweep = now
	var expired []string
	c.pools.next.Range(func(model string, p *pool) bool {
		if poolExpired(p, now, c.e.cfg.PoolExpiry) && !c.copiedPools[model] {
			expired = append(expired, model)
		}
		return true
	})
	for _, model := range expired {
		c.pools.Delete(model)
	}
	if len(expired) > 0 {
		c.e.telemetry.expiredPools.Add(c.ctx, int64(len(expired)), c.e.telemetry.attrs)
	}
}

func poolExpired(p *pool, now time.Time, expiry time.Duration) bool {
	return now.Sub(p.Seen) > expiry
}

// apply folds one metric into the state. Engine gauges are summed (queues of several engine cores) or
// maxed (KV utilization) per replica and batch; signals are taken as they come.
func (e *routingExporter) apply(m pmetric.Metric, res pcommon.Map, engine string, get func(string) *replica, getPool func(string) *pool) {
	if m.Type() != pmetric.MetricTypeGauge {
		return
	}
	dps := m.Gauge().DataPoints()
	seen := map[*replica]bool{}
	// Block counts add up across a replica's engine cores (llm.engine.index); two series of the same core are
	// two sources of the same pool (a Dynamo worker's runtime statistics beside its vLLM engine's own), not
	// two pools.
	var blocksByCore map[*replica]map[string]float64
	for i := 0; i < dps.Len(); i++ {
		dp := dps.At(i)
		v := dp.DoubleValue()
		if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
			v = float64(dp.IntValue())
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		attrs := dp.Attributes()
		at := dp.Timestamp().AsTime()
		model := boundedText(attrs, schema.AttrGenAIRequestModel)
		if m.Name() == schema.MetricLLMPoolDesiredReplicas || m.Name() == schema.MetricLLMPoolReplicas ||
			m.Name() == schema.MetricLLMPoolForecastReplicas || m.Name() == schema.MetricLLMPoolSaturationEta ||
			m.Name() == schema.MetricLLMPoolScaleReason {
			p := getPool(model)
			if p == nil {
				continue // refused at max_pools
			}
			switch m.Name() {
			case schema.MetricLLMPoolDesiredReplicas:
				p.Desired = v
				p.SaturationETA = math.NaN() // reported only while the queue grows: absent in this batch means none
			case schema.MetricLLMPoolScaleReason:
				if v == 1 {
					p.Reason = boundedText(attrs, schema.AttrLLMScaleReason)
				}
			case schema.MetricLLMPoolReplicas:
				p.Current = v
			case schema.MetricLLMPoolForecastReplicas:
				p.Forecast = v
			case schema.MetricLLMPoolSaturationEta:
				p.SaturationETA = v
			}
			p.Updated = at
			if at.After(p.Seen) {
				p.Seen = at
			}
			continue
		}
		key := e.replicaKey(attrs, res)
		if key == "" {
			continue
		}
		var r *replica
		switch m.Name() {
		case schema.MetricLLMSchedulerRequestsWaiting, schema.MetricLLMSchedulerRequestsRunning, schema.MetricLLMKVCacheUtilization,
			schema.MetricLLMKVCacheBlockSize, schema.MetricLLMKVCacheBlocksTotal, schema.MetricLLMLoRARequestsInfo:
			r = get(key)
			if engine != "" {
				r.Engine = engine
			}
			if model != "" {
				r.Model = model
			}
			first := !seen[r]
			seen[r] = true
			switch m.Name() {
			case schema.MetricLLMSchedulerRequestsWaiting:
				r.Waiting = accumulate(r.Waiting, v, first)
			case schema.MetricLLMSchedulerRequestsRunning:
				r.Running = accumulate(r.Running, v, first)
			case schema.MetricLLMKVCacheUtilization:
				if first || math.IsNaN(r.KVUtilization) || v > r.KVUtilization {
					r.KVUtilization = v
				}
			case schema.MetricLLMKVCacheBlockSize:
				r.BlockSize = v
			case schema.MetricLLMKVCacheBlocksTotal:
				if blocksByCore == nil {
					blocksByCore = map[*replica]map[string]float64{}
				}
				if blocksByCore[r] == nil {
					blocksByCore[r] = map[string]float64{}
				}
				core := boundedText(attrs, schema.AttrLLMEngineIndex)
				blocksByCore[r][core] = math.Max(blocksByCore[r][core], v)
				r.NumBlocks = 0
				for _, n := range blocksByCore[r] {
					r.NumBlocks += n
				}
			case schema.MetricLLMLoRARequestsInfo:
				r.LoRA = &lora{
					Max: boundedText(attrs, schema.AttrLLMLoRAMaxAdapters), Running: boundedText(attrs, schema.AttrLLMLoRARunningAdapters),
					Waiting: boundedText(attrs, schema.AttrLLMLoRAWaitingAdapters), Updated: v,
				}
			}
			if at.After(r.EngineUpdated) {
				r.EngineUpdated = at
			}
		case schema.MetricLLMReplicaHealthScore, schema.MetricLLMReplicaHealthComponent, schema.MetricLLMReplicaRoutingScore,
			schema.MetricLLMReplicaRoutingRecommended:
			r = get(key)
			if model != "" && r.Model == "" {
				r.Model = model
			}
			switch m.Name() {
			case schema.MetricLLMReplicaHealthScore:
				r.Health = v
			case schema.MetricLLMReplicaHealthComponent:
				if r.Components == nil {
					r.Components = map[string]float64{}
				}
				r.Components[boundedText(attrs, schema.AttrLLMHealthComponent)] = v
			case schema.MetricLLMReplicaRoutingScore:
				r.Routing = v
			case schema.MetricLLMReplicaRoutingRecommended:
				r.Recommended = v == 1
			}
			if at.After(r.SignalsUpdated) {
				r.SignalsUpdated = at
			}
		}
	}
}

// accumulate sums the series of one batch, replacing what an earlier batch said.
func accumulate(prev, v float64, first bool) float64 {
	if first || math.IsNaN(prev) {
		return v
	}
	return prev + v
}

func (e *routingExporter) replicaKey(attrs, res pcommon.Map) string {
	// A frontend tier (Dynamo's) reports the pool behind it, not a replica a router could pick.
	if tier, ok := res.Get(schema.AttrLLMServeTier); ok && tier.AsString() == schema.ServeTierFrontend {
		return ""
	}
	for _, m := range []pcommon.Map{attrs, res} {
		for _, k := range e.cfg.ReplicaKeys {
			if v := boundedText(m, k); v != "" {
				return v
			}
		}
	}
	return ""
}

func forgetOldest(replicas *cowWriter[*replica]) {
	oldest := ""
	var at time.Time
	replicas.next.Range(func(k string, r *replica) bool {
		updated := r.EngineUpdated
		if r.SignalsUpdated.After(updated) {
			updated = r.SignalsUpdated
		}
		if oldest == "" || updated.Before(at) {
			oldest, at = k, updated
		}
		return true
	})
	replicas.Delete(oldest)
}

// maxNameLength cuts every name read from the metrics (model, replica, scale reason): they become URL
// paths, keys of the served state and label values, and one 4 MiB model name must not be kept per pool.
const maxNameLength = 256

// boundedText is an attribute as text (see attrvalue.String), cut to maxNameLength.
func boundedText(m pcommon.Map, key string) string {
	return labelcap.Cut(attrvalue.String(m, key), maxNameLength)
}

func cloneMap(m map[string]float64) map[string]float64 {
	if m == nil {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedReplicas(s *snapshot) []*replica {
	out := make([]*replica, 0, s.replicas.Len())
	s.replicas.Range(func(_ string, r *replica) bool {
		out = append(out, r)
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Replica < out[j].Replica })
	return out
}
