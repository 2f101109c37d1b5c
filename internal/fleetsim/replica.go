package fleetsim

import (
	"math"
	"math/rand/v2"
)

type reqState int

const (
	stWaiting reqState = iota
	stRunning
	stFinished
)

// Phases a request's excess latency is charged to: before its first token (what TTFT sees) and after.
const (
	phasePrefill = 0
	phaseDecode  = 1
)

// request is one completion request as the engine core tracks it, plus what the ground truth needs.
type request struct {
	id          string
	seq         int64
	traceID     [16]byte
	gatewaySpan [8]byte // the gateway's SERVER span
	clientSpan  [8]byte // the gateway's CLIENT span to the replica
	engineSpan  [8]byte
	tenant      string
	family      string
	replica     *replica
	given       int // 1 + its index in Config.Workload; 0 for a tenant's request

	prompt, output, maxTokens int
	finishReason              string
	sharedPrefix              int    // prompt tokens its family's prompts share
	cacheBusted               bool   // a per-request header precedes the shared prefix
	sharedBlocks              int    // leading full blocks every prompt of the family has in common
	familyKey, ownKey         uint64 // identities of shared and own token content
	nominalCached             int    // prompt tokens its family's shared prefix normally lets it find cached

	gatewayStart float64 // the gateway received it
	arrival      float64 // the engine's frontend received it (vLLM arrival_time)
	queued       float64 // it entered the engine's waiting queue
	scheduled    float64 // first scheduled; -1 until then
	firstToken   float64
	lastToken    float64

	state       reqState
	computed    int // tokens whose KV is computed
	generated   int
	blocks      []int32
	registered  int // leading blocks whose content is registered in the prefix cache
	admitted    bool
	cached      int // prompt tokens found in the prefix cache at first admission
	missed      int // of nominalCached, tokens not found
	preemptions int

	// Attribution.
	waitMark     float64 // queue time is accounted up to here
	waitCause    Cause   // why it is waiting since waitMark
	recovering   bool    // preempted and not yet back where it was
	preemptedAt  float64
	preemptPhase int
	resumeAt     int // computed tokens at which the preemption's loss is made up
	excess       [2][numMeasuredCauses]float64
}

// blockHash identifies the content of the request's i-th full block. Blocks inside the family's shared
// prefix have the family's identity, all others the request's own. Because a prefix-cache hit must be a
// run of leading blocks, this is all a token-by-token hash chain would tell apart.
func (r *request) blockHash(i int) uint64 {
	key := r.ownKey
	if i < r.sharedBlocks {
		key = r.familyKey
	}
	h := key*0x9E3779B97F4A7C15 ^ uint64(i+1)*0xC2B2AE3D27D4EB4F
	h ^= h >> 31
	if h == 0 {
		h = 1
	}
	return h
}

func (r *request) known() int { return r.prompt + r.generated }

// slot is one request's share of a step.
type slot struct {
	r      *request
	tokens int
	decode bool
}

// replica is one engine instance: its scheduler, KV cache, GPUs and counters.
type replica struct {
	f        *Fleet
	idx      int
	name     string
	engine   string
	tp       int
	kv       *kvCache
	maxSeqs  int
	budget   int
	maxCtx   int // largest prompt+output a request may have here
	waiting  []*request
	running  []*request
	gpus     []*gpu
	stats    *engineStats
	rng      *rand.Rand
	instance string    // host:port of its engine endpoint once served
	nccl     *ncclComm // its NCCL Inspector files, when written

	busy      bool
	stepStart float64
	batch     []slot
	blockedKV bool
	step      stepRecord
	iter      int
	sgl       sglangSnapshot
	llama     llamaWindow
	trt       trtllmState
	maxKV     float64 // highest KV usage seen, for tests
}

// admissions is what a step's scheduling did besides choosing the batch.
type admissions struct {
	newRequests   int     // first scheduled this step
	newQueueSum   float64 // their queue time
	queries, hits float64 // prefix-cache lookups of the requests admitted this step, in tokens
	newBlocks     int     // blocks allocated (not found cached)
}

// stepRecord is the last step's shape and timing.
type stepRecord struct {
	admissions
	actual, unthrottled, balanced float64
	compute, mem                  float64 // one rank's, before straggling and clock scaling
	overhead                      float64
	straggle                      []float64
	prefillTokens, decodeSeqs     int
	ctxRead                       float64
}

func (rp *replica) outstanding() int { return len(rp.waiting) + len(rp.running) }

// enqueue puts a request that reached the engine into the waiting queue.
func (rp *replica) enqueue(r *request, t float64) {
	r.state = stWaiting
	r.queued = t
	r.waitMark = t
	r.waitCause = rp.queueCause(r, rp.dominantTenant(), rp.blockedKV && len(rp.waiting) > 0)
	rp.waiting = append(rp.waiting, r)
	if !rp.busy {
		rp.startStep(t)
	}
}

// dominantTenant is the tenant holding more than half of the running batch, if any.
func (rp *replica) dominantTenant() string {
	if len(rp.running) == 0 {
		return ""
	}
	counts := map[string]int{}
	for _, r := range rp.running {
		counts[r.tenant]++
	}
	for t, n := range counts {
		if 2*n > len(rp.running) {
			return t
		}
	}
	return ""
}

// queueCause says why r waits: for want of KV blocks when those are what stops admission; else behind
// another tenant's work when that tenant holds most of the batch; else behind everyone's.
func (rp *replica) queueCause(r *request, dominant string, blockedKV bool) Cause {
	switch {
	case blockedKV:
		return CauseKVCachePressure
	case dominant != "" && dominant != r.tenant:
		return CauseTenantContention
	}
	return CauseQueueSaturation
}

// accountWaiting charges the time waiting requests spent since their mark to the cause they waited for.
func (rp *replica) accountWaiting(t float64) {
	for _, r := range rp.waiting {
		if !r.recovering {
			r.excess[phasePrefill][r.waitCause] += t - r.waitMark
		}
		r.waitMark = t
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// preempt evicts a running request the way vLLM V1 does: its KV is freed (its full blocks stay cached until
// reused) and it goes back to the front of the queue, to be recomputed.
func (rp *replica) preempt(r *request, t float64) {
	rp.kv.release(r.blocks)
	rp.stats.preemptions++
	if !r.recovering {
		r.recovering = true
		r.preemptedAt = t
		r.resumeAt = r.computed
		r.preemptPhase = phaseDecode
		if r.generated == 0 {
			r.preemptPhase = phasePrefill
		}
	}
	r.preemptions++
	r.computed = 0
	r.registered = 0
	r.blocks = nil
	r.state = stWaiting
	r.waitMark = t
	rp.waiting = append([]*request{r}, rp.waiting...)
}

// schedule builds one step: running requests first (each needs one token to decode, or the next chunk of
// its prompt), preempting from the back of the batch when blocks run out; then, if nothing was preempted,
// waiting requests in arrival order while the token budget, the batch size and the KV cache allow, each
// starting after the longest prefix it finds cached.
func (rp *replica) schedule(t float64) ([]slot, admissions) {
	bs := rp.kv.blockSize
	budget := rp.budget
	var batch []slot
	var adm admissions
	preempted := false
	for i := 0; i < len(rp.running) && budget > 0; i++ {
		r := rp.running[i]
		n := min(r.known()-r.computed, budget)
		selfPreempted := false
		for {
			want := ceilDiv(r.computed+n, bs) - len(r.blocks)
			if want <= 0 {
				break
			}
			if b, ok := rp.kv.allocate(want, t); ok {
				r.blocks = append(r.blocks, b...)
				adm.newBlocks += want
				break
			}
			victim := rp.running[len(rp.running)-1]
			rp.running = rp.running[:len(rp.running)-1]
			rp.preempt(victim, t)
			preempted = true
			if victim == r {
				selfPreempted = true
				break
			}
		}
		if selfPreempted {
			break
		}
		batch = append(batch, slot{r: r, tokens: n, decode: r.generated > 0 && r.computed == r.known()-1})
		budget -= n
	}
	rp.blockedKV = false
	for !preempted && len(rp.waiting) > 0 && budget > 0 && len(rp.running) < rp.maxSeqs {
		r := rp.waiting[0]
		known := r.known()
		hit := rp.kv.cachedPrefix(r.blockHash, (known-1)/bs)
		hitTokens := len(hit) * bs
		n := min(known-hitTokens, budget)
		want := ceilDiv(hitTokens+n, bs) - len(hit)
		if rp.kv.free-rp.kv.freeAmong(hit) < want {
			rp.blockedKV = true
			break
		}
		rp.kv.acquire(hit, t)
		fresh, _ := rp.kv.allocate(want, t)
		adm.newBlocks += want
		r.blocks = append(append(r.blocks[:0], hit...), fresh...)
		r.computed = hitTokens
		r.registered = len(hit)
		rp.stats.prefixQueries += float64(known)
		rp.stats.prefixHits += float64(hitTokens)
		adm.queries += float64(known)
		adm.hits += float64(hitTokens)
		if !r.admitted {
			r.admitted = true
			r.cached = min(hitTokens, r.prompt)
			r.missed = max(0, r.nominalCached-r.cached)
			r.scheduled = t
			adm.newQueueSum += t - r.queued
			adm.newRequests++
		}
		if !r.recovering {
			r.excess[phasePrefill][r.waitCause] += t - r.waitMark
		}
		r.state = stRunning
		rp.waiting = rp.waiting[1:]
		rp.running = append(rp.running, r)
		batch = append(batch, slot{r: r, tokens: n})
		budget -= n
	}
	// Whoever still waits, waits for this reason until the next step.
	dominant := rp.dominantTenant()
	for _, r := range rp.waiting {
		r.waitCause = rp.queueCause(r, dominant, rp.blockedKV)
	}
	return batch, adm
}

// startStep schedules a step at t and the event for its end.
func (rp *replica) startStep(t float64) {
	rp.accountWaiting(t)
	batch, adm := rp.schedule(t)
	if len(batch) == 0 {
		rp.busy = false
		return
	}
	f := rp.f
	m := f.cfg.Model
	var b batchShape
	for _, s := range batch {
		if s.decode {
			b.decodeSeqs++
			b.ctxRead += float64(s.r.computed + 1)
		} else {
			b.prefillTokens += s.tokens
			b.ctxRead += float64(s.r.computed + s.tokens)
			b.attnFlops += attentionFlops(m, s.r.computed, s.tokens)
		}
	}
	clock := make([]float64, rp.tp)
	straggle := make([]float64, rp.tp)
	for i, g := range rp.gpus {
		clock[i] = g.clock
	}
	if f.sc.StragglerReplica == rp.idx && f.faultActive(t) {
		straggle[rp.tp-1] = f.sc.StragglerFactor - 1
	}
	actual, unthrottled, balanced := stepTimes(m, f.cfg.GPU, f.cfg.Engine, rp.tp, b, clock, straggle)
	// Run-to-run variation of kernels and host scheduling: a few percent, the same for all three so that
	// their differences stay what the fault caused.
	jitter := 1 + 0.04*(rp.rng.Float64()-0.5)
	actual *= jitter
	unthrottled *= jitter
	balanced *= jitter

	tokens := float64(b.prefillTokens + b.decodeSeqs)
	compute := (2*m.Params*tokens + b.attnFlops) / float64(rp.tp) / (f.cfg.GPU.PeakFLOPS * m.speedup() * f.cfg.GPU.MFU)
	mem := (m.WeightBytes()/float64(rp.tp) + b.ctxRead*m.KVBytesPerToken()/float64(rp.tp)) / (f.cfg.GPU.HBMBytesPerS * f.cfg.GPU.HBMEfficiency)
	rp.busy = true
	rp.stepStart = t
	rp.batch = batch
	rp.step = stepRecord{
		admissions: adm, actual: actual, unthrottled: unthrottled, balanced: balanced,
		compute: compute, mem: mem, overhead: f.cfg.Engine.StepOverhead * jitter, straggle: straggle,
		prefillTokens: b.prefillTokens, decodeSeqs: b.decodeSeqs, ctxRead: b.ctxRead,
	}
	if rp.nccl != nil {
		own := make([]float64, rp.tp)
		for i := range own {
			own[i] = math.Max(compute, mem) * (1 + straggle[i]) / clock[i] * jitter
		}
		rp.nccl.step(m, t, rp.step.overhead, allReduceTime(m, f.cfg.GPU, rp.tp, tokens)*jitter, own, b.prefillTokens+b.decodeSeqs)
	}
	f.push(&event{t: t + actual, kind: evStepEnd, rep: rp})
}

// endStep applies the step that started at stepStart and ends at t.
func (rp *replica) endStep(t float64) {
	f := rp.f
	st := rp.step
	bs := rp.kv.blockSize
	var finished []*request
	for _, s := range rp.batch {
		r := s.r
		phase := phasePrefill
		if r.generated > 0 {
			phase = phaseDecode
		}
		if !r.recovering {
			r.excess[phase][CauseGPUThrottling] += st.actual - st.unthrottled
			r.excess[phase][CauseCollectiveWait] += st.unthrottled - st.balanced
			if s.decode {
				r.excess[phase][CauseDecodeContention] += math.Max(0, st.balanced-f.refITL)
			}
		}
		r.computed += s.tokens
		for r.registered < r.computed/bs && r.registered < len(r.blocks) {
			rp.kv.register(r.blocks[r.registered], r.blockHash(r.registered))
			r.registered++
		}
		if r.recovering && r.computed >= r.resumeAt {
			r.recovering = false
			r.excess[r.preemptPhase][CauseKVCachePressure] += t - r.preemptedAt
		}
		if r.computed < r.known() {
			continue // a chunk of a longer prompt: no token yet
		}
		r.generated++
		rp.stats.generationTokens++
		if r.generated == 1 {
			r.firstToken = t
			rp.stats.promptTokens += float64(r.prompt)
			rp.stats.cachedTokens += float64(r.cached)
			rp.stats.promptComputed += float64(r.prompt - r.cached)
			if rp.engine == EngineLlamaCpp {
				rp.llamaFirstToken(r)
			}
		} else {
			rp.stats.observe(qITL, t-r.lastToken)
		}
		r.lastToken = t
		if r.generated >= r.output {
			finished = append(finished, r)
		}
	}
	// Engine-wide step accounting.
	for i, g := range rp.gpus {
		s := 1 + st.straggle[i]
		g.account(f.cfg.GPU, rp.stepStart, t, st.overhead, st.compute*s, st.mem*s)
	}
	rp.stats.steps++
	rp.stats.stepSeconds += st.actual
	rp.stats.stepSeqs += float64(len(rp.batch))
	tokens := float64(st.prefillTokens + st.decodeSeqs)
	rp.stats.maxStepTokens = math.Max(rp.stats.maxStepTokens, tokens)
	rp.stats.observe(qIterationTokens, tokens)
	m := f.cfg.Model
	rp.stats.flopsPerGPU += 2 * m.Params * tokens / float64(rp.tp)
	rp.stats.readBytesPerGPU += (m.WeightBytes() + st.ctxRead*m.KVBytesPerToken()) / float64(rp.tp)
	rp.stats.writeBytesPerGPU += tokens * m.KVBytesPerToken() / float64(rp.tp)
	rp.recordIteration(t, len(finished))
	rp.maxKV = math.Max(rp.maxKV, rp.kv.usage())

	if len(finished) > 0 {
		keep := rp.running[:0]
		for _, r := range rp.running {
			if r.generated < r.output {
				keep = append(keep, r)
			}
		}
		clear(rp.running[len(keep):])
		rp.running = keep
		for _, r := range finished {
			rp.finish(r)
		}
	}
	rp.busy = false
	rp.batch = nil
	if rp.outstanding() > 0 {
		rp.startStep(t)
	}
}

// finish records a finished request in the engine's histograms and hands it to the fleet.
func (rp *replica) finish(r *request) {
	r.state = stFinished
	rp.kv.release(r.blocks)
	r.blocks = nil
	s := rp.stats
	s.finished[r.finishReason]++
	s.requests++
	s.observe(qE2E, r.lastToken-r.arrival)
	s.observe(qTTFT, r.firstToken-r.arrival)
	s.observe(qQueue, r.scheduled-r.queued)
	s.observe(qPrefill, r.firstToken-r.scheduled)
	s.observe(qDecode, r.lastToken-r.firstToken)
	s.observe(qInference, r.lastToken-r.scheduled)
	if r.generated > 1 {
		s.observe(qTPOT, (r.lastToken-r.firstToken)/float64(r.generated-1))
	}
	s.observe(qPromptTokens, float64(r.prompt))
	s.observe(qGenerationTokens, float64(r.generated))
	s.observe(qMaxTokens, float64(r.maxTokens))
	s.observe(qParamsN, 1)
	s.observe(qPreemptions, float64(r.preemptions))
	s.observe(qPrefillComputed, float64(r.prompt-r.cached))
	switch rp.engine {
	case EngineLlamaCpp:
		rp.llamaFinished(r)
	case EngineTRTLLM:
		rp.trtllmPerf(r)
	}
	rp.f.complete(r)
}
