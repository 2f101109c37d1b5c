package llmsignalsconnector

import (
	"math"
	"sort"

	"github.com/servescope/servescope/internal/schema"
)

// health is a replica's health score and its factors, each 0-1.
type health struct {
	score      float64
	components map[string]float64
}

const (
	componentQueue     = "queue"
	componentKVCache   = "kv_cache"
	componentTTFT      = "ttft"
	componentGPU       = "gpu"
	componentTelemetry = "telemetry"
)

// healthOf multiplies the factors, so any one of them near zero sinks the replica: a queue (1/(1+waiting/target)),
// KV pressure (1 up to 80%, falling to 0 at 100%), TTFT against its usual level, GPU trouble (XID errors 0,
// throttling 0.5) and stale telemetry (0). A factor without data is 1: no evidence, no penalty.
func healthOf(v *view, cfg *Config) health {
	c := map[string]float64{componentQueue: 1, componentKVCache: 1, componentTTFT: 1, componentGPU: 1, componentTelemetry: 1}
	if v.stale {
		c[componentTelemetry] = 0
	}
	if w := v.now.WaitingAtArrival; known(w) {
		c[componentQueue] = 1 / (1 + w/cfg.Autoscaling.TargetWaitingPerReplica)
	}
	if kv := v.now.KVUtilizationMax; known(kv) && kv > 0.8 {
		c[componentKVCache] = math.Max(0, (1-kv)/0.2)
	}
	if mean, usual := v.interval.TTFTMean, v.interval.TTFTUsual; known(mean, usual) && mean > 0 {
		c[componentTTFT] = math.Min(1, usual/mean)
	}
	switch {
	case v.interval.XIDErrors > 0:
		c[componentGPU] = 0
	case len(v.interval.ThrottleReasons) > 0:
		c[componentGPU] = 0.5
	}
	score := 1.0
	for _, f := range c {
		score *= f
	}
	return health{score: score, components: c}
}

// routingScore ranks replicas of one model pool for the next request: free KV capacity, an empty queue,
// batch room, and prefix-cache locality where the engine reports it; stale telemetry scores 0.
func routingScore(v *view) float64 {
	if v.stale {
		return 0
	}
	score := 1.0
	if kv := v.now.KVUtilizationMax; known(kv) {
		score *= math.Max(0, 1-kv)
	}
	if w := v.now.WaitingAtArrival; known(w) {
		score /= 1 + w
	}
	if run, capacity := v.now.RunningMax, v.now.MaxRunning; known(run, capacity) && capacity > 0 {
		score *= 1 - 0.5*math.Min(1, run/capacity)
	}
	if hr := v.interval.PrefixHitRatio; known(hr) {
		score *= (1 + 0.2*hr) / 1.2
	}
	return score
}

// pool is the replicas serving one model.
type pool struct {
	model    string
	views    []*view
	desired  int
	forecast int // replicas needed at the forecast horizon
	reason   string
	eta      float64 // s until the queue target is reached; NaN when not growing
	bestKey  string
	fresh    int
	waiting  float64
	kvMean   float64
	growth   float64
	scores   map[string]float64
}

const (
	reasonDemand  = schema.ScaleReasonDemand
	reasonQueue   = schema.ScaleReasonQueue
	reasonKVCache = schema.ScaleReasonKVCache
	reasonLowLoad = schema.ScaleReasonLowLoad
	reasonSteady  = schema.ScaleReasonSteady
)

// plan sets the pool's desired replicas. Once a replica's capacity is measured (see demand), the pool
// needs its arrivals over that capacity at the target utilization, plus what drains its queue within
// drain_time. Until then, the queue per replica against its target. Either way, mean KV utilization above
// its target scales by its pressure when that asks for more, and all is kept within [min_replicas,
// max_replicas]. Only replicas with fresh telemetry count.
func (p *pool) plan(cfg *Config, d *demand, dt float64) {
	a := cfg.Autoscaling
	kvSum, kvN, growthSum, growthN := 0.0, 0, 0.0, 0
	for _, v := range p.views {
		if v.stale {
			continue
		}
		p.fresh++
		if w := v.now.WaitingAtArrival; known(w) {
			p.waiting += w
		}
		if kv := v.now.KVUtilizationMax; known(kv) {
			kvSum += kv
			kvN++
		}
		if g := v.now.QueueGrowthPerMinute; known(g) {
			growthSum += g
			growthN++
		}
	}
	p.eta, p.kvMean, p.growth = math.NaN(), math.NaN(), math.NaN()
	if kvN > 0 {
		p.kvMean = kvSum / float64(kvN)
	}
	if growthN > 0 {
		p.growth = growthSum / float64(growthN)
	}
	target := a.TargetWaitingPerReplica * float64(p.fresh)
	if known(p.growth) && p.growth > 1.05 && p.waiting < target {
		p.eta = math.Log(target/math.Max(p.waiting, 1)) / math.Log(p.growth) * 60
	}
	if p.fresh == 0 {
		p.desired, p.reason = clampInt(a.MinReplicas, a.MinReplicas, a.MaxReplicas), reasonSteady
		p.forecast = p.desired
		return
	}
	d.observe(p, a, dt)
	kvPressure := 0.0
	if known(p.kvMean) {
		kvPressure = p.kvMean / a.TargetKVUtilization
	}
	if need := d.replicasFor(d.arrivals, p.waiting, a); known(need) {
		p.desired, p.reason = int(math.Ceil(need)), reasonDemand
		switch {
		case p.desired < p.fresh:
			p.reason = reasonLowLoad
		case p.desired == p.fresh:
			p.reason = reasonSteady
		}
		if kv := int(math.Ceil(float64(p.fresh) * kvPressure)); kvPressure > 1 && kv > p.desired {
			p.desired, p.reason = kv, reasonKVCache
		}
		p.desired = clampInt(p.desired, a.MinReplicas, a.MaxReplicas)
		p.forecast = p.desired
		if f := d.replicasFor(d.forecastArrivals(a, cfg.ForecastHorizon), 0, a); known(f) {
			p.forecast = clampInt(int(math.Ceil(f)), a.MinReplicas, a.MaxReplicas)
		}
		return
	}
	queuePressure := p.waiting / float64(p.fresh) / a.TargetWaitingPerReplica
	pressure, reason := queuePressure, reasonQueue
	if kvPressure > pressure {
		pressure, reason = kvPressure, reasonKVCache
	}
	switch {
	case pressure > 1:
		p.desired = int(math.Ceil(float64(p.fresh) * pressure))
	case pressure < a.ScaleDownBelow:
		p.desired, reason = p.fresh-1, reasonLowLoad
	default:
		p.desired, reason = p.fresh, reasonSteady
	}
	p.desired, p.reason = clampInt(p.desired, a.MinReplicas, a.MaxReplicas), reason
	// The forecast: the queue grown at its current rate for the horizon, against the same targets.
	p.forecast = p.desired
	if known(p.growth) && p.growth > 1 {
		grown := (p.waiting + float64(p.fresh)) * math.Pow(p.growth, cfg.ForecastHorizon.Minutes())
		if need := int(math.Ceil(grown / a.TargetWaitingPerReplica)); need > p.forecast {
			p.forecast = clampInt(need, a.MinReplicas, a.MaxReplicas)
		}
	}
}

// rank scores every replica and names the best one (ties: the replica key sorted first).
func (p *pool) rank() {
	p.scores = map[string]float64{}
	keys := make([]string, 0, len(p.views))
	for _, v := range p.views {
		p.scores[v.replica] = routingScore(v)
		keys = append(keys, v.replica)
	}
	sort.Strings(keys)
	best := -1.0
	for _, k := range keys {
		if p.scores[k] > best {
			best, p.bestKey = p.scores[k], k
		}
	}
}

func clampInt(v, lo, hi int) int {
	return max(lo, min(hi, v))
}
