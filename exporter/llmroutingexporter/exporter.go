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
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

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
}

// snapshot is one consistent view; readers load it atomically and never see a half-applied batch.
type snapshot struct {
	replicas map[string]*replica
	pools    map[string]*pool
}

type routingExporter struct {
	cfg    *Config
	set    component.TelemetrySettings
	now    func() time.Time
	state  atomic.Pointer[snapshot]
	write  sync.Mutex // one writer at a time; readers never wait
	server *http.Server
	done   chan struct{}
}

func newRoutingExporter(cfg *Config, set component.TelemetrySettings) *routingExporter {
	e := &routingExporter{cfg: cfg, set: set, now: time.Now}
	e.state.Store(&snapshot{replicas: map[string]*replica{}, pools: map[string]*pool{}})
	return e
}

func (e *routingExporter) start(ctx context.Context, host component.Host) error {
	ln, err := e.cfg.ToListener(ctx)
	if err != nil {
		return err
	}
	e.server, err = e.cfg.ToServer(ctx, host.GetExtensions(), e.set, e.handler())
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

// consume applies a batch to a copy of the state and publishes the copy.
func (e *routingExporter) consume(_ context.Context, md pmetric.Metrics) error {
	e.write.Lock()
	defer e.write.Unlock()
	cur := e.state.Load()
	next := &snapshot{replicas: make(map[string]*replica, len(cur.replicas)), pools: make(map[string]*pool, len(cur.pools))}
	for k, v := range cur.replicas {
		next.replicas[k] = v
	}
	for k, v := range cur.pools {
		next.pools[k] = v
	}
	copied := map[string]bool{}
	get := func(key string) *replica {
		r := next.replicas[key]
		switch {
		case r == nil:
			if len(next.replicas) >= e.cfg.MaxReplicas {
				forgetOldest(next.replicas)
			}
			nan := math.NaN()
			r = &replica{Replica: key, Waiting: nan, Running: nan, KVUtilization: nan, BlockSize: nan, NumBlocks: nan, Health: nan, Routing: nan}
		case !copied[key]:
			c := *r
			c.Components = cloneMap(r.Components)
			r = &c
		}
		copied[key] = true
		next.replicas[key] = r
		return r
	}
	getPool := func(model string) *pool {
		p := next.pools[model]
		if p == nil {
			p = &pool{Model: model, Desired: math.NaN(), Current: math.NaN(), Forecast: math.NaN(), SaturationETA: math.NaN()}
		} else if !copied["pool/"+model] {
			c := *p
			p = &c
		}
		copied["pool/"+model] = true
		next.pools[model] = p
		return p
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		res := rms.At(i).Resource().Attributes()
		engine := text(res, schema.AttrLLMEngineName)
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				e.apply(ms.At(k), res, engine, get, getPool)
			}
		}
	}
	e.state.Store(next)
	return nil
}

// apply folds one metric into the state. Engine gauges are summed (queues of several engine cores) or
// maxed (KV utilization) per replica and batch; signals are taken as they come.
func (e *routingExporter) apply(m pmetric.Metric, res pcommon.Map, engine string, get func(string) *replica, getPool func(string) *pool) {
	if m.Type() != pmetric.MetricTypeGauge {
		return
	}
	dps := m.Gauge().DataPoints()
	seen := map[*replica]bool{}
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
		model := text(attrs, schema.AttrGenAIRequestModel)
		if m.Name() == schema.MetricLLMPoolDesiredReplicas || m.Name() == schema.MetricLLMPoolReplicas ||
			m.Name() == schema.MetricLLMPoolForecastReplicas || m.Name() == schema.MetricLLMPoolSaturationEta ||
			m.Name() == schema.MetricLLMPoolScaleReason {
			p := getPool(model)
			switch m.Name() {
			case schema.MetricLLMPoolDesiredReplicas:
				p.Desired = v
				p.SaturationETA = math.NaN() // reported only while the queue grows: absent in this batch means none
			case schema.MetricLLMPoolScaleReason:
				if v == 1 {
					p.Reason = text(attrs, schema.AttrLLMScaleReason)
				}
			case schema.MetricLLMPoolReplicas:
				p.Current = v
			case schema.MetricLLMPoolForecastReplicas:
				p.Forecast = v
			case schema.MetricLLMPoolSaturationEta:
				p.SaturationETA = v
			}
			p.Updated = at
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
				r.NumBlocks = accumulate(r.NumBlocks, v, first)
			case schema.MetricLLMLoRARequestsInfo:
				r.LoRA = &lora{Max: text(attrs, schema.AttrLLMLoRAMaxAdapters), Running: text(attrs, schema.AttrLLMLoRARunningAdapters),
					Waiting: text(attrs, schema.AttrLLMLoRAWaitingAdapters), Updated: v}
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
				r.Components[text(attrs, schema.AttrLLMHealthComponent)] = v
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
	for _, m := range []pcommon.Map{attrs, res} {
		for _, k := range e.cfg.ReplicaKeys {
			if v := text(m, k); v != "" {
				return v
			}
		}
	}
	return ""
}

func forgetOldest(replicas map[string]*replica) {
	oldest := ""
	var at time.Time
	for k, r := range replicas {
		updated := r.EngineUpdated
		if r.SignalsUpdated.After(updated) {
			updated = r.SignalsUpdated
		}
		if oldest == "" || updated.Before(at) {
			oldest, at = k, updated
		}
	}
	delete(replicas, oldest)
}

func text(m pcommon.Map, key string) string {
	if v, ok := m.Get(key); ok {
		return v.AsString()
	}
	return ""
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
	out := make([]*replica, 0, len(s.replicas))
	for _, r := range s.replicas {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Replica < out[j].Replica })
	return out
}
