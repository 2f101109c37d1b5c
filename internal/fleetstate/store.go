// Package fleetstate keeps a bounded, time-indexed window of each replica's canonical state (scheduler,
// KV cache, prefix cache, GPUs) and summarizes it over an interval, such as one request's lifetime.
//
// It reads canonical names only: what llm_normalize and the nvml receiver produce. Everything it holds is
// bounded by Config: snapshots per replica and per GPU, the age of a snapshot, the number of replicas and GPUs;
// besides, each replica's usual levels (usual.go) take a bounded histogram and a bounded list of marks.
package fleetstate

import (
	"math"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/labelcap"
	"github.com/servescope/servescope/internal/schema"
)

// Config bounds the store.
type Config struct {
	// ReplicaKeys are the resource attributes that name a replica, first present wins.
	ReplicaKeys []string
	// Window is how long a snapshot is kept.
	Window time.Duration
	// MaxSnapshots caps the snapshots kept per replica and per GPU (the oldest go first).
	MaxSnapshots int
	// MaxReplicas caps replicas and GPUs each; the one seen longest ago is forgotten first.
	MaxReplicas int
	// MinPrefixQueries is how many prompt tokens must have been looked up in the prefix cache for a hit ratio
	// to be evidence (the engines count tokens, and hits in whole KV blocks of 16 or so: a ratio of a few
	// dozen tokens moves in steps of a quarter). A short request's scrape interval is widened back, scrape
	// by scrape, until it holds that many, RecentLookback at most. Default 256.
	MinPrefixQueries float64
	// UsualHalfLife is how fast the usual levels forget: an observation this old weighs half as much as a
	// new one. Default 2 h.
	UsualHalfLife time.Duration
	// MaxLabelLength cuts replica names, models and engine names read from resources to this many bytes
	// (0: no limit): they become label values downstream.
	MaxLabelLength int
}

// Store is safe for concurrent use.
type Store struct {
	cfg      Config
	mu       sync.RWMutex
	replicas map[string]*replica
	gpus     map[string]*gpu
	// byOwner indexes GPUs by the replica they are attributed to ("" for none), so a summary visits its
	// replica's GPUs, not the fleet's.
	byOwner map[string]map[string]*gpu
	// replicaCollectives holds each replica's collective timings (nccl receiver), by replica key.
	replicaCollectives map[string]*collectiveState
	// usualScratch is reused to recompute a replica's usual levels (under the write lock).
	usualScratch usualSums
}

// EngineSnapshot is one scrape of one replica's engine state. NaN means the engine did not report it.
type EngineSnapshot struct {
	Time          int64 // unix ns
	Waiting       float64
	Running       float64
	KVUtilization float64
	// Cumulative counters, summed over the replica's series; deltas are taken reset-aware.
	Preemptions   float64
	PrefixQueries float64
	PrefixHits    float64
	Finished      float64
	PromptTokens  float64
	GenTokens     float64
	// TTFT histogram's cumulative sum (s) and count, for mean time to first token over an interval.
	TTFTSum, TTFTCount float64
	// MaxRunning is the engine's configured capacity, where it reports one.
	MaxRunning float64
}

// GPUSnapshot is one scrape of one GPU.
type GPUSnapshot struct {
	Time        int64
	Utilization float64 // 0-1, NaN when unknown
	// Throttle lists the clock-throttle reasons active at this scrape that slow work down (idle and
	// application-clock settings are not throttling).
	Throttle          []string
	XIDErrors         float64 // cumulative
	MemoryUtilization float64 // 0-1, NaN when unknown
	SMClock           float64 // Hz, NaN when unknown
}

type replica struct {
	snaps    ring[EngineSnapshot]
	model    string
	engine   string
	lastSeen int64
	// placement is where the replica runs, as its newest resource said (PlacementKeys, in that order; ""
	// where unknown).
	placement [len(PlacementKeys)]string

	// unhealthy is the time the caller marked unhealthy; folded the healthy levels of what left the window.
	unhealthy healthMarks
	folded    usualSums
	// The usual levels, recomputed per scrape and per mark, not per summary.
	runningUsual, hitRatioUsual, ttftUsual float64
}

type gpu struct {
	id       string
	snaps    ring[GPUSnapshot]
	owner    string // replica key, "" when not attributed
	name     string // product name (hw.name), for pricing
	position GPUPosition
	lastSeen int64
	// peakSMClock is the highest SM clock the GPU ever reported: a fact of the hardware, kept past the
	// window so that a throttling longer than the window still reads as throttling.
	peakSMClock float64
}

// GPUPosition is a GPU's place in its replica's parallel layout, as the nvml receiver attributes it; -1 and
// "" where unknown.
type GPUPosition struct {
	TPRank, PPStage int
	Group           string
}

var unknownPosition = GPUPosition{TPRank: -1, PPStage: -1}

func positionOf(res pcommon.Map) GPUPosition {
	p := unknownPosition
	if v, ok := res.Get(schema.AttrLLMParallelTpRank); ok && v.Type() == pcommon.ValueTypeInt {
		p.TPRank = int(v.Int())
	}
	if v, ok := res.Get(schema.AttrLLMParallelPpRank); ok && v.Type() == pcommon.ValueTypeInt {
		p.PPStage = int(v.Int())
	}
	if v, ok := res.Get(schema.AttrLLMParallelGroup); ok {
		p.Group = v.AsString()
	}
	return p
}

// New returns an empty store.
func New(cfg Config) *Store {
	if cfg.MaxSnapshots <= 0 {
		cfg.MaxSnapshots = 512
	}
	if cfg.MaxReplicas <= 0 {
		cfg.MaxReplicas = 4096
	}
	if cfg.Window <= 0 {
		cfg.Window = 15 * time.Minute
	}
	if cfg.MinPrefixQueries <= 0 {
		cfg.MinPrefixQueries = 256
	}
	if cfg.UsualHalfLife <= 0 {
		cfg.UsualHalfLife = 2 * time.Hour
	}
	return &Store{
		cfg: cfg, replicas: map[string]*replica{}, gpus: map[string]*gpu{}, byOwner: map[string]map[string]*gpu{},
		replicaCollectives: map[string]*collectiveState{},
	}
}

// ReplicaKey names the replica a resource belongs to, "" when none of the configured keys is present or the
// resource is a serving system's frontend tier (Dynamo's frontend: its series describe the pool of workers
// behind it, whose own pages are the replicas).
func (s *Store) ReplicaKey(res pcommon.Map) string {
	if tier, ok := res.Get(schema.AttrLLMServeTier); ok && tier.AsString() == schema.ServeTierFrontend {
		return ""
	}
	for _, k := range s.cfg.ReplicaKeys {
		if v, ok := res.Get(k); ok && v.AsString() != "" {
			return labelcap.Cut(v.AsString(), s.cfg.MaxLabelLength)
		}
	}
	return ""
}

// maxPlausibleSMClock: no GPU runs its SMs near 10 GHz. A reading above is dropped, so that one garbage value
// cannot set a peak that makes every later reading look throttled.
const maxPlausibleSMClock = 1e10

// benignThrottle are clock-event reasons that do not slow a busy GPU down.
var benignThrottle = map[string]bool{"gpu_idle": true, "applications_clocks": true, "display_clock": true, "sync_boost": true}

// Observe records the canonical state in md. Metrics it does not use are ignored.
func (s *Store) Observe(md pmetric.Metrics) {
	rms := md.ResourceMetrics()
	s.mu.Lock()
	defer s.mu.Unlock()
	var collectives map[readingKey]*collectiveReading
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		res := rm.Resource().Attributes()
		if key := s.ReplicaKey(res); key != "" {
			// The nccl receiver's resources are processes (a rank on a GPU): their timings are the replica's.
			collectives = s.readCollective(collectives, key, rm)
		}
		if id, ok := res.Get(schema.AttrHwID); ok {
			s.observeGPU(id.AsString(), s.ReplicaKey(res), rm)
			continue
		}
		key := s.ReplicaKey(res)
		if key != "" {
			s.observeEngine(key, res, rm)
		}
		s.observeGPUPoints(key, rm)
	}
	for _, r := range collectives {
		s.pushCollective(r)
	}
}

func (s *Store) observeEngine(key string, res pcommon.Map, rm pmetric.ResourceMetrics) {
	nan := math.NaN()
	snap := EngineSnapshot{
		Waiting: nan, Running: nan, KVUtilization: nan, Preemptions: nan, PrefixQueries: nan,
		PrefixHits: nan, Finished: nan, PromptTokens: nan, GenTokens: nan, TTFTSum: nan, TTFTCount: nan, MaxRunning: nan,
	}
	var model string
	forEachHistogram(rm, schema.MetricGenAIServerTimeToFirstToken, func(ts int64, sum float64, count uint64) {
		snap.TTFTSum = nanAdd(snap.TTFTSum, sum)
		snap.TTFTCount = nanAdd(snap.TTFTCount, float64(count))
		if ts > snap.Time {
			snap.Time = ts
		}
	})
	forEachPoint(rm, func(name string, attrs pcommon.Map, ts int64, v float64) {
		var field *float64
		keepHighest := false
		switch name {
		case schema.MetricLLMSchedulerRequestsWaiting:
			field = &snap.Waiting
		case schema.MetricLLMSchedulerRequestsRunning:
			field = &snap.Running
		case schema.MetricLLMKVCacheUtilization:
			field, keepHighest = &snap.KVUtilization, true
		case schema.MetricLLMSchedulerPreemptions:
			field = &snap.Preemptions
		case schema.MetricLLMPrefixCacheQueries:
			field = &snap.PrefixQueries
		case schema.MetricLLMPrefixCacheHits:
			field = &snap.PrefixHits
		case schema.MetricLLMRequestsFinished:
			field = &snap.Finished
		case schema.MetricLLMTokensPrompt:
			field = &snap.PromptTokens
		case schema.MetricLLMTokensGeneration:
			field = &snap.GenTokens
		case schema.MetricLLMSchedulerRequestsMaxRunning:
			field = &snap.MaxRunning
		default:
			return
		}
		if ts > snap.Time {
			snap.Time = ts
		}
		if m, ok := attrs.Get(schema.AttrGenAIRequestModel); ok && model == "" {
			model = m.AsString()
		}
		switch {
		case math.IsNaN(*field):
			*field = v
		case keepHighest:
			*field = math.Max(*field, v)
		default: // several models or engine cores on one replica: their queues add up
			*field += v
		}
	})
	if snap.Time == 0 {
		return
	}
	r := s.replicas[key]
	if r == nil {
		s.makeRoom(len(s.replicas), func() { s.forgetOldestReplica() })
		r = &replica{snaps: newRing[EngineSnapshot](s.cfg.MaxSnapshots), runningUsual: math.NaN(), hitRatioUsual: math.NaN(), ttftUsual: math.NaN()}
		s.replicas[key] = r
	}
	if model != "" {
		r.model = labelcap.Cut(model, s.cfg.MaxLabelLength)
	}
	if e, ok := res.Get(schema.AttrLLMEngineName); ok {
		r.engine = labelcap.Cut(e.AsString(), s.cfg.MaxLabelLength)
	}
	for i, k := range PlacementKeys {
		if v, ok := res.Get(k); ok && v.AsString() != "" {
			r.placement[i] = labelcap.Cut(v.AsString(), s.cfg.MaxLabelLength)
		}
	}
	r.lastSeen = snap.Time
	halfLife := float64(s.cfg.UsualHalfLife.Nanoseconds())
	r.folded.keepNear(snap.Time, halfLife)
	r.snaps.pushDropping(snap, engineTime, snap.Time-s.cfg.Window.Nanoseconds(), func(old, next EngineSnapshot) {
		r.folded.fold(old, next, r.unhealthy, halfLife)
	})
	if r.snaps.n > 0 {
		r.unhealthy = r.unhealthy.forgetBefore(r.snaps.at(0).Time)
	}
	r.refreshUsual(halfLife, &s.usualScratch)
}

// MarkUnhealthy tells the store that replica was unhealthy over [from, to] (unix ns): its slow requests,
// its open incidents. The usual levels leave that time out. A mark must come while the snapshots it covers
// are still held (within Window and MaxSnapshots); an unknown replica's marks are ignored.
func (s *Store) MarkUnhealthy(replica string, from, to int64) {
	if to < from {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.replicas[replica]
	if r == nil || r.snaps.n == 0 || to < r.snaps.at(0).Time {
		return
	}
	if r.unhealthy.covers(from, to) {
		return // already known: one call per slow request of an incident costs no recomputation
	}
	changes := r.markChangesUsual(from, to)
	r.unhealthy = r.unhealthy.add(from, to)
	if changes {
		r.refreshUsual(float64(s.cfg.UsualHalfLife.Nanoseconds()), &s.usualScratch)
	}
}

// markChangesUsual reports whether marking [from, to] unhealthy changes the usual levels as they stand: only
// when it newly covers a snapshot's time or newly meets the interval between two snapshots. During an
// incident each slow request extends the mark by the little it ended later, which mostly meets intervals
// already marked: those calls skip the recomputation over the whole window (a span-path cost per request).
// Time after the newest snapshot is judged when the next one arrives, which recomputes anyway.
func (r *replica) markChangesUsual(from, to int64) bool {
	first, last, ok := r.snaps.span(engineTime, from, to)
	if !ok {
		return false
	}
	// One snapshot either side too: an interval that only touches [from, to] at its end meets it as well.
	for i := first; i <= min(last+1, r.snaps.n-1); i++ {
		t := r.snaps.at(i).Time
		if t >= from && t <= to && !r.unhealthy.overlaps(t, t) {
			return true
		}
		if i > 0 {
			prev := r.snaps.at(i - 1).Time
			if prev <= to && t >= from && !r.unhealthy.overlaps(prev, t) {
				return true
			}
		}
	}
	return false
}

// gpuReading gathers one GPU's points from one batch.
type gpuReading struct {
	snap          GPUSnapshot
	name          string
	position      GPUPosition
	processOwners map[string]bool
}

func newGPUReading() *gpuReading {
	return &gpuReading{
		snap:          GPUSnapshot{Utilization: math.NaN(), XIDErrors: math.NaN(), MemoryUtilization: math.NaN(), SMClock: math.NaN()},
		processOwners: map[string]bool{}, position: unknownPosition,
	}
}

// add takes one point if it is GPU state; false when the metric is not one the summaries use.
func (g *gpuReading) add(name string, attrs pcommon.Map, ts int64, v float64) bool {
	snap := &g.snap
	switch name {
	case schema.MetricHwGPUUtilization:
		snap.Utilization = v
	case schema.MetricHwGPUMemoryUtilization:
		snap.MemoryUtilization = v
	case schema.MetricNvidiaGPUClockFrequency:
		if t, ok := attrs.Get(schema.AttrNvidiaGPUClockType); !ok || t.AsString() != "sm" {
			return false
		}
		if v > maxPlausibleSMClock {
			return true // a reading no GPU gives: neither a clock nor a peak
		}
		snap.SMClock = v
	case schema.MetricNvidiaGPUClockThrottled:
		if r, ok := attrs.Get(schema.AttrNvidiaGPUThrottleReason); ok && v > 0 && !benignThrottle[r.AsString()] {
			snap.Throttle = append(snap.Throttle, r.AsString())
		}
	case schema.MetricHwErrors:
		if t, ok := attrs.Get(schema.AttrErrorType); ok && t.AsString() == "xid" {
			snap.XIDErrors = v
		}
	case schema.MetricNvidiaGPUProcessMemoryUsage:
		if r, ok := attrs.Get(schema.AttrServiceInstanceID); ok {
			g.processOwners[r.AsString()] = true
		}
		return true
	default:
		return false
	}
	if ts > snap.Time {
		snap.Time = ts
	}
	return true
}

// observeGPU reads a resource that is one GPU (the nvml receiver's shape: hw.id on the resource).
func (s *Store) observeGPU(id, owner string, rm pmetric.ResourceMetrics) {
	g := newGPUReading()
	forEachPoint(rm, func(name string, attrs pcommon.Map, ts int64, v float64) { g.add(name, attrs, ts, v) })
	if n, ok := rm.Resource().Attributes().Get(schema.AttrHwName); ok {
		g.name = n.AsString()
	}
	g.position = positionOf(rm.Resource().Attributes())
	s.pushGPU(id, owner, g)
}

// observeGPUPoints reads GPU points that name their GPU on the data point (dcgm-exporter through
// llm_normalize: UUID becomes hw.id per series); the resource's replica, when it has one, owns them.
func (s *Store) observeGPUPoints(owner string, rm pmetric.ResourceMetrics) {
	var readings map[string]*gpuReading
	forEachPoint(rm, func(name string, attrs pcommon.Map, ts int64, v float64) {
		id, ok := attrs.Get(schema.AttrHwID)
		if !ok {
			return
		}
		if readings == nil {
			readings = map[string]*gpuReading{}
		}
		g := readings[id.AsString()]
		if g == nil {
			g = newGPUReading()
			readings[id.AsString()] = g
		}
		if g.add(name, attrs, ts, v) && g.name == "" {
			if n, ok := attrs.Get(schema.AttrHwName); ok {
				g.name = n.AsString()
			}
		}
	})
	for id, g := range readings {
		s.pushGPU(id, owner, g)
	}
}

func (s *Store) pushGPU(id, owner string, reading *gpuReading) {
	snap := reading.snap
	if snap.Time == 0 {
		return
	}
	g := s.gpus[id]
	if g == nil {
		s.makeRoom(len(s.gpus), func() { s.forgetOldestGPU() })
		g = &gpu{id: id, snaps: newRing[GPUSnapshot](s.cfg.MaxSnapshots), position: unknownPosition}
		s.gpus[id] = g
		s.index(g, "")
	}
	if owner == "" && len(reading.processOwners) == 1 {
		for o := range reading.processOwners {
			owner = o
		}
	}
	if owner != "" && owner != g.owner {
		s.unindex(g)
		g.owner = owner
		s.index(g, owner)
	}
	if reading.name != "" {
		g.name = reading.name
	}
	if reading.position != unknownPosition {
		g.position = reading.position
	}
	g.lastSeen = snap.Time
	g.snaps.push(snap, gpuTime, snap.Time-s.cfg.Window.Nanoseconds())
	if snap.SMClock > g.peakSMClock {
		g.peakSMClock = snap.SMClock
	}
}

func (s *Store) makeRoom(n int, forget func()) {
	if n >= s.cfg.MaxReplicas {
		forget()
	}
}

func (s *Store) forgetOldestReplica() {
	delete(s.replicas, oldest(s.replicas, func(r *replica) int64 { return r.lastSeen }))
}

func (s *Store) forgetOldestGPU() {
	id := oldest(s.gpus, func(g *gpu) int64 { return g.lastSeen })
	if g := s.gpus[id]; g != nil {
		s.unindex(g)
	}
	delete(s.gpus, id)
}

// oldest is the key of the entry seen longest ago.
func oldest[T any](m map[string]T, lastSeen func(T) int64) string {
	key, at := "", int64(math.MaxInt64)
	for k, v := range m {
		if t := lastSeen(v); t < at {
			key, at = k, t
		}
	}
	return key
}

func (s *Store) index(g *gpu, owner string) {
	if s.byOwner[owner] == nil {
		s.byOwner[owner] = map[string]*gpu{}
	}
	s.byOwner[owner][g.id] = g
}

func (s *Store) unindex(g *gpu) {
	delete(s.byOwner[g.owner], g.id)
	if len(s.byOwner[g.owner]) == 0 {
		delete(s.byOwner, g.owner)
	}
}

// forEachPoint calls fn for every gauge and sum data point (histograms carry no state the summaries use).
func forEachPoint(rm pmetric.ResourceMetrics, fn func(name string, attrs pcommon.Map, ts int64, v float64)) {
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		ms := sms.At(i).Metrics()
		for j := 0; j < ms.Len(); j++ {
			m := ms.At(j)
			var dps pmetric.NumberDataPointSlice
			switch m.Type() {
			case pmetric.MetricTypeGauge:
				dps = m.Gauge().DataPoints()
			case pmetric.MetricTypeSum:
				dps = m.Sum().DataPoints()
			default:
				continue
			}
			for k := 0; k < dps.Len(); k++ {
				dp := dps.At(k)
				if dp.Flags().NoRecordedValue() {
					continue
				}
				v := dp.DoubleValue()
				if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
					v = float64(dp.IntValue())
				}
				// Everything the summaries read is a count, a level or a ratio: a negative value is a broken
				// exporter, not state, and is dropped like a NaN.
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					continue
				}
				fn(m.Name(), dp.Attributes(), int64(dp.Timestamp()), v)
			}
		}
	}
}

// forEachHistogram calls fn for every data point of the named histogram.
func forEachHistogram(rm pmetric.ResourceMetrics, name string, fn func(ts int64, sum float64, count uint64)) {
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		ms := sms.At(i).Metrics()
		for j := 0; j < ms.Len(); j++ {
			m := ms.At(j)
			if m.Name() != name || m.Type() != pmetric.MetricTypeHistogram {
				continue
			}
			dps := m.Histogram().DataPoints()
			for k := 0; k < dps.Len(); k++ {
				dp := dps.At(k)
				if !dp.Flags().NoRecordedValue() && dp.HasSum() && !math.IsNaN(dp.Sum()) {
					fn(int64(dp.Timestamp()), dp.Sum(), dp.Count())
				}
			}
		}
	}
}

func nanAdd(a, b float64) float64 {
	if math.IsNaN(a) {
		return b
	}
	return a + b
}

// Replicas lists the replicas the store knows, sorted.
func (s *Store) Replicas() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.replicas))
	for k := range s.replicas {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Newest is the time of the replica's newest engine snapshot (unix ns) and whether the replica is known.
func (s *Store) Newest(key string) (int64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.replicas[key]
	if r == nil {
		return 0, false
	}
	return r.lastSeen, true
}

// Identity is the model and engine a replica last reported, without summarizing its state.
func (s *Store) Identity(key string) (model, engine string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r := s.replicas[key]; r != nil {
		return r.model, r.engine
	}
	return "", ""
}

// PlacementKeys are the resource attributes that say where a replica runs (what k8s_attributes adds on
// Kubernetes): its incidents carry them, so that an incident names the pod to look at.
var PlacementKeys = [...]string{
	schema.AttrK8sPodName, schema.AttrK8sNamespaceName, schema.AttrK8sNodeName, schema.AttrK8sDeploymentName,
	schema.AttrRayClusterName, schema.AttrRayNodeType,
}

// Placement calls fn with each placement attribute (PlacementKeys) the replica's resource has carried, the
// newest value of each, in PlacementKeys' order.
func (s *Store) Placement(key string, fn func(name, value string)) {
	s.mu.RLock()
	r := s.replicas[key]
	var placement [len(PlacementKeys)]string
	if r != nil {
		placement = r.placement
	}
	s.mu.RUnlock()
	for i, v := range placement {
		if v != "" {
			fn(PlacementKeys[i], v)
		}
	}
}

// UnattributedGPUs lists, sorted, the GPUs seen within the window that belong to no replica the store
// knows, when it knows several: their state reaches no summary, and the caller can say so once. Empty with
// a lone replica, which has them all (a sidecar), and with none.
func (s *Store) UnattributedGPUs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.replicas) < 2 {
		return nil
	}
	newest := int64(math.MinInt64)
	for _, g := range s.gpus {
		newest = max(newest, g.lastSeen)
	}
	var out []string
	for owner, gpus := range s.byOwner {
		if _, ok := s.replicas[owner]; ok {
			continue
		}
		for id, g := range gpus {
			if g.lastSeen >= newest-s.cfg.Window.Nanoseconds() {
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Resolve maps a span's replica key onto a known replica: the key itself when known, else, when the store
// holds exactly one replica (a sidecar), that one. ok is false when neither applies.
func (s *Store) Resolve(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.replicas[key]; ok {
		return key, true
	}
	if len(s.replicas) == 1 {
		for k := range s.replicas {
			return k, true
		}
	}
	return "", false
}
