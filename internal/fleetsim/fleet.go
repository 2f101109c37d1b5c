package fleetsim

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

type evKind int

const (
	evArrival evKind = iota // a tenant's next request reaches the gateway
	evEnqueue               // a routed request reaches its engine's queue
	evStepEnd
)

type event struct {
	t      float64
	seq    uint64 // ties break in the order events were created, so runs repeat exactly
	kind   evKind
	rep    *replica
	req    *request
	tenant int
	// given is the index in Config.Workload of a given request's arrival, -1 for a tenant's.
	given int
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].t != q[j].t {
		return q[i].t < q[j].t
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// tenantState is a tenant's arrival process.
type tenantState struct {
	Tenant
	maxRate float64 // fleet-wide, for thinning
	arrRNG  *rand.Rand
	lenRNG  *rand.Rand
}

// Fleet is the simulated fleet. All of its methods are safe for concurrent use: the HTTP endpoints read it
// while RunRealtime advances it.
type Fleet struct {
	mu       sync.Mutex
	cfg      Config
	sc       *Scenario
	dur      float64
	end      float64 // dur plus the drain allowance
	now      float64
	epoch    time.Time
	events   eventQueue
	evSeq    uint64
	replicas []*replica
	tenants  []*tenantState
	idRNG    *rand.Rand
	reqSeq   int64
	rr       int // round-robin start for routing ties

	refITL, refPrefillPerToken float64

	outstanding int
	truth       []Truth
	truthSink   func(Truth)
	pending     []*request // finished, spans not yet taken
	spanLimit   int
	dropped     uint64

	servers []*server
	nccl    *ncclOutput // nil unless Config.NCCLDir is set
}

// New builds a fleet at virtual time zero. Nothing runs until Advance or RunRealtime.
func New(cfg Config) (*Fleet, error) {
	if cfg.Scenario.MinTP > cfg.TP {
		cfg.TP = cfg.Scenario.MinTP
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sc := cfg.Scenario
	f := &Fleet{
		cfg:       cfg,
		sc:        &sc,
		dur:       cfg.Duration.Seconds(),
		end:       cfg.Duration.Seconds() + cfg.Drain.Seconds(),
		epoch:     cfg.Epoch,
		idRNG:     rand.New(rand.NewPCG(cfg.Seed, 0x1d)),
		spanLimit: 100000,
	}
	if f.epoch.IsZero() {
		f.epoch = time.Now()
	}
	f.computeReference()
	for i, eng := range cfg.Engines {
		params := cfg.Engine
		if eng == EngineTRTLLM {
			params.BlockSize = 32 // TensorRT-LLM's tokens_per_block
		}
		blocks := kvBlocks(cfg.Model, cfg.GPU, params, cfg.TP)
		if cfg.KVBlocks > 0 {
			blocks = cfg.KVBlocks
		}
		if blocks < 64 {
			return nil, fmt.Errorf("model %s does not leave room for a KV cache on %d x %s", cfg.Model.Name, cfg.TP, cfg.GPU.Name)
		}
		rp := &replica{
			f: f, idx: i, name: fmt.Sprintf("%s-%d", shortEngine(eng), i), engine: eng, tp: cfg.TP,
			kv:      newKVCache(blocks, params.BlockSize),
			maxSeqs: cfg.Engine.MaxNumSeqs,
			budget:  cfg.Engine.MaxNumBatchedTokens,
			maxCtx:  min(cfg.Model.MaxModelLen, blocks*params.BlockSize*9/10),
			stats:   newEngineStats(bucketsFor(eng, cfg.Model.MaxModelLen)),
			rng:     rand.New(rand.NewPCG(cfg.Seed, 0x100+uint64(i))),
		}
		if eng == EngineLlamaCpp {
			// llama-server serves a fixed number of slots, each with its share of the context, and never
			// needs to preempt: a request that fits its slot always has its KV.
			rp.maxSeqs = cfg.LlamaCppSlots
			rp.maxCtx = min(rp.maxCtx, blocks*params.BlockSize/cfg.LlamaCppSlots)
			rp.budget = min(rp.budget, 2048) // n_batch
		}
		gpuRNG := rand.New(rand.NewPCG(cfg.Seed, 0x200+uint64(i)))
		for g := 0; g < cfg.TP; g++ {
			rp.gpus = append(rp.gpus, newGPU(cfg.GPU, i, g, gpuRNG.Uint64()))
		}
		rp.kv.onEvict = rp.stats.observeEviction
		rp.instance = rp.name
		f.replicas = append(f.replicas, rp)
	}
	n := float64(len(f.replicas))
	for i, t := range sc.Tenants {
		factor := 1.0
		if k, ok := sc.RateFactor[t.Name]; ok && k > 1 {
			factor = k
		}
		ts := &tenantState{
			Tenant:  t,
			maxRate: t.Rate * n * factor * f.loadFactor(),
			arrRNG:  rand.New(rand.NewPCG(cfg.Seed, 0x300+uint64(i))),
			lenRNG:  rand.New(rand.NewPCG(cfg.Seed, 0x400+uint64(i))),
		}
		f.tenants = append(f.tenants, ts)
		if len(cfg.Workload) == 0 {
			f.scheduleArrival(i, 0)
		}
	}
	for i, a := range cfg.Workload {
		f.push(&event{t: a.AtS, kind: evArrival, given: i})
	}
	f.applyFaults(0)
	if cfg.NCCLDir != "" {
		out, err := newNCCLOutput(f)
		if err != nil {
			return nil, err
		}
		f.nccl = out
	}
	return f, nil
}

func shortEngine(e string) string {
	switch e {
	case EngineTRTLLM:
		return "trtllm"
	case EngineLlamaCpp:
		return "llamacpp"
	}
	return e
}

// computeReference sets the "normal" step costs excess latency is measured against: one decoding request
// with a 2k-token context on healthy GPUs, and the cost per token of a 4k-token prefill.
func (f *Fleet) computeReference() {
	c := f.cfg
	ones := make([]float64, c.TP)
	zeros := make([]float64, c.TP)
	for i := range ones {
		ones[i] = 1
	}
	_, _, f.refITL = stepTimes(c.Model, c.GPU, c.Engine, c.TP, batchShape{decodeSeqs: 1, ctxRead: 2048}, ones, zeros)
	n := 4096
	_, _, p := stepTimes(c.Model, c.GPU, c.Engine, c.TP, batchShape{prefillTokens: n, ctxRead: float64(n), attnFlops: attentionFlops(c.Model, 0, n)}, ones, zeros)
	f.refPrefillPerToken = (p - c.Engine.StepOverhead) / float64(n)
}

func (f *Fleet) push(e *event) {
	f.evSeq++
	e.seq = f.evSeq
	heap.Push(&f.events, e)
}

func (f *Fleet) faultActive(t float64) bool { return f.sc.active(t, f.dur) }

// rate is a tenant's fleet-wide arrival rate at t.
func (f *Fleet) rate(ts *tenantState, t float64) float64 {
	r := ts.Rate * float64(len(f.replicas)) * f.loadFactor()
	if k, ok := f.sc.RateFactor[ts.Name]; ok && f.faultActive(t) {
		r *= k
	}
	return r
}

func (f *Fleet) loadFactor() float64 {
	if f.sc.LoadFactor > 0 {
		return f.sc.LoadFactor
	}
	return 1
}

// scheduleArrival draws the tenant's next arrival after t: a Poisson process whose rate changes with the
// scenario, sampled by thinning a process at the tenant's highest rate.
func (f *Fleet) scheduleArrival(i int, t float64) {
	ts := f.tenants[i]
	if ts.maxRate <= 0 {
		return
	}
	for {
		t += ts.arrRNG.ExpFloat64() / ts.maxRate
		if t >= f.dur {
			return
		}
		if ts.arrRNG.Float64()*ts.maxRate <= f.rate(ts, t) {
			f.push(&event{t: t, kind: evArrival, tenant: i, given: -1})
			return
		}
	}
}

// applyFaults sets the GPUs' clocks and throttle reasons for time t.
func (f *Fleet) applyFaults(t float64) {
	for _, rp := range f.replicas {
		for _, g := range rp.gpus {
			g.clock, g.reasons = 1, 0
			if f.sc.ThrottleReplica == rp.idx && f.faultActive(t) {
				g.clock = f.sc.ThrottleClock
				g.reasons = throttleSwThermal | throttleHwThermal
			}
		}
	}
}

// newRequest draws a tenant's request arriving at the gateway at t.
func (f *Fleet) newRequest(ts *tenantState, t float64) *request {
	fams := ts.Families
	if sw, ok := f.sc.Switch[ts.Name]; ok && f.faultActive(t) {
		fams = sw
	}
	rng := ts.lenRNG
	var total float64
	for _, fm := range fams {
		total += fm.Weight
	}
	pick := rng.Float64() * total
	fam := fams[len(fams)-1]
	for _, fm := range fams {
		if pick < fm.Weight {
			fam = fm
			break
		}
		pick -= fm.Weight
	}
	suffix := fam.SuffixMin + rng.IntN(fam.SuffixMax-fam.SuffixMin+1)
	out := int(math.Round(float64(fam.OutputMin) * math.Pow(float64(fam.OutputMax)/float64(fam.OutputMin), rng.Float64())))
	maxTokens := fam.OutputMax
	reason := "stop"
	if out >= maxTokens*97/100 {
		out, reason = maxTokens, "length"
	}
	f.reqSeq++
	r := &request{
		seq: f.reqSeq, tenant: ts.Name, family: fam.Name,
		prompt: fam.PrefixTokens + suffix, output: max(1, out), maxTokens: maxTokens, finishReason: reason,
		sharedPrefix: fam.PrefixTokens,
		familyKey:    stringKey(fam.Name),
		ownKey:       f.idRNG.Uint64() | 1,
		gatewayStart: t,
		scheduled:    -1, firstToken: -1, lastToken: -1,
	}
	if f.faultActive(t) && contains(f.sc.CacheBust, fam.Name) {
		// The new template puts a per-request header first: nothing is shared any more, and the prompt
		// grows by the header.
		r.cacheBusted = true
		r.prompt += 24
	}
	fillRandom(f.idRNG, r.traceID[:])
	fillRandom(f.idRNG, r.gatewaySpan[:])
	fillRandom(f.idRNG, r.clientSpan[:])
	fillRandom(f.idRNG, r.engineSpan[:])
	return r
}

// givenRequest is a request of Config.Workload arriving at the gateway at t.
func (f *Fleet) givenRequest(a Arrival, t float64) *request {
	f.reqSeq++
	r := &request{
		seq: f.reqSeq, tenant: a.Tenant, family: a.Family,
		prompt: a.PromptTokens, output: a.OutputTokens, maxTokens: a.OutputTokens, finishReason: "length",
		sharedPrefix: min(a.SharedPrefixTokens, a.PromptTokens),
		familyKey:    stringKey(a.Family),
		ownKey:       f.idRNG.Uint64() | 1,
		gatewayStart: t,
		scheduled:    -1, firstToken: -1, lastToken: -1,
	}
	if a.Family == "" {
		r.sharedPrefix = 0
	}
	fillRandom(f.idRNG, r.traceID[:])
	fillRandom(f.idRNG, r.gatewaySpan[:])
	fillRandom(f.idRNG, r.clientSpan[:])
	fillRandom(f.idRNG, r.engineSpan[:])
	return r
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := i; j < len(b) && j < i+8; j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func stringKey(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h | 1
}

// route is the gateway's balancing (Config.Router): by default the replica with the fewest outstanding
// requests, ties broken round robin (what most inference gateways do without prefix-aware routing).
func (f *Fleet) route(r *request) *replica {
	n := len(f.replicas)
	defer func() { f.rr++ }()
	switch f.cfg.Router {
	case RouterRoundRobin:
		return f.replicas[f.rr%n]
	case RouterLeastWaiting:
		return f.least(func(rp *replica) int { return len(rp.waiting)*1_000_000 + len(rp.running) })
	case RouterPrefixAffinity:
		home := f.replicas[r.familyKey%uint64(n)]
		shortest := f.least(func(rp *replica) int { return len(rp.waiting) })
		if len(home.waiting) < len(shortest.waiting)+2 {
			return home
		}
	}
	return f.least(func(rp *replica) int { return rp.outstanding() })
}

// least is the replica with the lowest load, ties broken round robin.
func (f *Fleet) least(load func(*replica) int) *replica {
	n := len(f.replicas)
	best := f.replicas[f.rr%n]
	for k := 1; k < n; k++ {
		if rp := f.replicas[(f.rr+k)%n]; load(rp) < load(best) {
			best = rp
		}
	}
	return best
}

// gateway and network delays around the engine (seconds).
const (
	gatewayToEngine = 0.0012
	engineToGateway = 0.0008
)

func (f *Fleet) handle(e *event) {
	switch e.kind {
	case evArrival:
		var r *request
		if e.given >= 0 {
			r = f.givenRequest(f.cfg.Workload[e.given], e.t)
			r.given = e.given + 1
		} else {
			r = f.newRequest(f.tenants[e.tenant], e.t)
		}
		rp := f.route(r)
		r.replica = rp
		r.id = requestID(rp.engine, f.idRNG)
		if total := r.prompt + r.output; total > rp.maxCtx {
			// The client's request would be rejected for its length; it trims the document instead.
			r.prompt = max(rp.kv.blockSize+1, rp.maxCtx-r.output)
			r.output = min(r.output, rp.maxCtx-r.prompt)
		}
		bs := rp.kv.blockSize
		shared := min(r.sharedPrefix, r.prompt-1)
		r.nominalCached = shared / bs * bs
		if !r.cacheBusted {
			r.sharedBlocks = shared / bs
		}
		r.arrival = e.t + gatewayToEngine
		f.outstanding++
		frontend := f.cfg.Engine.FrontendOverhead + f.cfg.Engine.FrontendPerToken*float64(r.prompt)
		f.push(&event{t: r.arrival + frontend, kind: evEnqueue, rep: rp, req: r})
		if e.given < 0 {
			f.scheduleArrival(e.tenant, e.t)
		}
	case evEnqueue:
		e.rep.enqueue(e.req, e.t)
	case evStepEnd:
		e.rep.endStep(e.t)
	}
}

func requestID(engine string, rng *rand.Rand) string {
	var b [16]byte
	fillRandom(rng, b[:])
	if engine == EngineSGLang {
		return fmt.Sprintf("%x", b) // SGLang's rid is a bare uuid4 hex
	}
	return fmt.Sprintf("cmpl-%x-0", b)
}

// Advance runs the simulation up to virtual time t (seconds since the start), as fast as it can.
func (f *Fleet) Advance(t float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance(t)
}

func (f *Fleet) advance(t float64) {
	t = math.Min(t, f.end)
	wasActive := f.faultActive(f.now)
	for len(f.events) > 0 && f.events[0].t <= t {
		e := heap.Pop(&f.events).(*event)
		if active := f.faultActive(e.t); active != wasActive {
			f.applyFaults(e.t)
			wasActive = active
		}
		f.now = e.t
		f.handle(e)
	}
	if f.faultActive(t) != wasActive {
		f.applyFaults(t)
	}
	f.now = math.Max(f.now, t)
	if f.nccl != nil {
		f.nccl.dump(f.now, f.done())
	}
}

// RunToEnd runs the whole scenario as fast as it can: arrivals for Duration, then until every request has
// finished or the drain allowance is used up.
func (f *Fleet) RunToEnd() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.done() {
		if len(f.events) == 0 {
			f.advance(f.end)
			break
		}
		f.advance(f.events[0].t)
	}
}

func (f *Fleet) done() bool {
	return f.now >= f.end || (f.now >= f.dur && f.outstanding == 0)
}

// Done reports whether the scenario is over.
func (f *Fleet) Done() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done()
}

// Outstanding is the number of requests that arrived and have not finished (they get no ground-truth
// record if the run ends first).
func (f *Fleet) Outstanding() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outstanding
}

// Now is the current virtual time in seconds.
func (f *Fleet) Now() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Epoch is the wall-clock time of virtual time zero.
func (f *Fleet) Epoch() time.Time { return f.epoch }

// Config returns the configuration the fleet runs (with TP raised to the scenario's minimum).
func (f *Fleet) Config() Config { return f.cfg }

// RunRealtime advances virtual time at speed times the wall clock (1 is real time) until the scenario is
// over or ctx ends, calling tick (if not nil) after every advance without holding the fleet's lock.
func (f *Fleet) RunRealtime(ctx context.Context, speed float64, tick func()) error {
	if speed <= 0 {
		f.RunToEnd()
		if tick != nil {
			tick()
		}
		return nil
	}
	// A fleet whose epoch is the time it was built runs on wall time since then (scaled), so that at speed 1
	// span timestamps and scrapes agree with the wall clock. One given a fixed epoch, or advanced before,
	// runs on from where it is.
	f.mu.Lock()
	start, v0 := f.epoch, f.now
	if v0 > 0 || !f.cfg.Epoch.IsZero() {
		start = time.Now()
	}
	f.mu.Unlock()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			f.Advance(v0 + now.Sub(start).Seconds()*speed)
			if tick != nil {
				tick()
			}
			if f.Done() {
				return nil
			}
		}
	}
}

// complete is called once per finished request.
func (f *Fleet) complete(r *request) {
	f.outstanding--
	tr := f.truthFor(r)
	f.truth = append(f.truth, tr)
	if f.truthSink != nil {
		f.truthSink(tr)
	}
	if len(f.pending) < f.spanLimit {
		f.pending = append(f.pending, r)
	} else {
		f.dropped++
	}
}

// OnTruth registers a function called (with the fleet locked) with every ground-truth record as its
// request finishes; the command uses it to stream the JSONL file.
func (f *Fleet) OnTruth(fn func(Truth)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.truthSink = fn
}

// GroundTruth returns the records of all requests finished so far, in finishing order.
func (f *Fleet) GroundTruth() []Truth {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Truth(nil), f.truth...)
}

// ReplicaState is a snapshot of one replica, for tests and for a demo's status line.
type ReplicaState struct {
	Name     string `json:"name"`
	Engine   string `json:"engine"`
	Instance string `json:"instance"`
	Waiting  int    `json:"waiting"`
	Running  int    `json:"running"`
	// KVUsage is the share of KV blocks held (0-1).
	KVUsage float64 `json:"kv_usage"`
	// Cumulative counters since the start.
	Preemptions   float64 `json:"preemptions"`
	PrefixQueries float64 `json:"prefix_cache_queries"`
	PrefixHits    float64 `json:"prefix_cache_hits"`
	Steps         float64 `json:"steps"`
	StepSeconds   float64 `json:"step_seconds"`
	Finished      float64 `json:"finished"`
	// SMClock is the GPUs' SM clock as a share of the maximum (the lowest of the replica's GPUs).
	SMClock float64 `json:"sm_clock"`
	// NCCLFiles is the glob of the replica's NCCL Inspector files, as Endpoint.NCCLFiles.
	NCCLFiles string `json:"nccl_files,omitempty"`
}

// State returns a snapshot of every replica.
func (f *Fleet) State() []ReplicaState {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]ReplicaState, len(f.replicas))
	for i, rp := range f.replicas {
		clock := 1.0
		for _, g := range rp.gpus {
			clock = math.Min(clock, g.clock)
		}
		out[i] = ReplicaState{
			Name: rp.name, Engine: rp.engine, Instance: rp.instance, Waiting: len(rp.waiting), Running: len(rp.running),
			KVUsage: rp.kv.usage(), Preemptions: rp.stats.preemptions, PrefixQueries: rp.stats.prefixQueries,
			PrefixHits: rp.stats.prefixHits, Steps: rp.stats.steps, StepSeconds: rp.stats.stepSeconds,
			Finished: rp.stats.requests, SMClock: clock, NCCLFiles: rp.ncclFiles(),
		}
	}
	return out
}
