package ncclreceiver

import (
	"math"
	"sort"
)

// Arrival skew: how much later the last rank reached a collective than the first. A collective is a
// barrier, so every rank's step ends at the same time and per-rank step time cannot show which rank held
// the others up; the moment each rank arrives can.
//
// Three ways of measuring it, best first, each named in llm.collective.skew_basis:
//   - timestamps: the Inspector's verbose records carry each rank's kernel start on the host's wall clock.
//     Ranks on one host share that clock, so max(start) - min(start) is the skew and the last to start is
//     the late rank. Across hosts only when configured (skew.clocks: synchronized).
//   - durations: without comparable clocks, but with several ranks of one collective in view, the spread of
//     their execution times. In a barrier-like collective (all-reduce, all-gather, reduce-scatter,
//     all-to-all) ranks finish together, so a rank's time inside it is the time since it arrived: the early
//     ranks' times are long (they waited), the late rank's the shortest. Durations come from GPU clocks
//     and need no clock agreement between hosts.
//   - self_history: only one rank of the collective in view (its peers are on other nodes, read by other
//     collectors): that rank's time above its own recent minimum for the same communicator, operation and
//     size, i.e. how long it waited beyond the transfer itself. No late rank can be named from one rank.

// barrierLike lists the collectives whose ranks all finish together, for the durations basis.
var barrierLike = map[string]bool{"AllReduce": true, "AllGather": true, "AllGatherV": true, "ReduceScatter": true, "All2All": true}

type pendKey struct {
	comm string
	name string
	seq  uint64
}

type arrival struct {
	rank    int
	host    string
	startUs uint64
	execUs  float64
	selfUs  float64 // time above this rank's own recent minimum; NaN without enough history
	proc    *proc
}

type pending struct {
	key     pendKey
	nranks  int
	bucket  string
	label   string // communicator as shown to users
	born    uint64 // interval in which the first rank arrived
	arrived []arrival
}

// skewResult is one finished measurement.
type skewResult struct {
	basis    string
	skewS    float64
	lateRank int // -1: nobody named (self_history, or a skew too small to mean anything)
	rank     int // self_history: the rank measured; -1 otherwise
	name     string
	label    string
	bucket   string
	nranks   int
	proc     *proc // the late rank's (or the measured rank's) process
}

type historyKey struct {
	proc   *proc
	comm   string
	name   string
	bucket string
}

// history is a rank's recent execution times for one kind of operation, a fixed ring.
type history struct {
	vals []float64
	next int
	full bool
}

func (h *history) min() float64 {
	n := h.next
	if h.full {
		n = len(h.vals)
	}
	m := math.Inf(1)
	for _, v := range h.vals[:n] {
		m = math.Min(m, v)
	}
	return m
}

func (h *history) count() int {
	if h.full {
		return len(h.vals)
	}
	return h.next
}

func (h *history) add(v float64) {
	h.vals[h.next] = v
	h.next++
	if h.next == len(h.vals) {
		h.next, h.full = 0, true
	}
}

type skewer struct {
	cfg      SkewConfig
	pend     map[pendKey]*pending
	hist     map[historyKey]*history
	maxHist  int
	evicted  int // pending collectives finished early because max_pending was reached
	histFull bool
}

func newSkewer(cfg SkewConfig, maxHistories int) *skewer {
	return &skewer{cfg: cfg, pend: map[pendKey]*pending{}, hist: map[historyKey]*history{}, maxHist: maxHistories}
}

// add files one rank's record of a collective.
func (s *skewer) add(o *op, p *proc, interval uint64) []skewResult {
	bucket := sizeBucket(o.msgBytes)
	self := math.NaN()
	hk := historyKey{proc: p, comm: o.commID, name: o.name, bucket: bucket}
	h := s.hist[hk]
	if h == nil && len(s.hist) < s.maxHist {
		h = &history{vals: make([]float64, s.cfg.History)}
		s.hist[hk] = h
	} else if h == nil {
		s.histFull = true
	}
	if h != nil {
		// A baseline needs a few samples; the first operations of a communicator (warm-up, connection setup)
		// would otherwise all count as waiting.
		if h.count() >= min(8, s.cfg.History) {
			self = math.Max(0, o.execUs-h.min())
		}
		h.add(o.execUs)
	}
	k := pendKey{comm: o.commID, name: o.name, seq: o.seq}
	e := s.pend[k]
	var out []skewResult
	if e == nil {
		if len(s.pend) >= s.cfg.MaxPending {
			out = s.evictOldest()
		}
		e = &pending{key: k, nranks: o.nranks, bucket: bucket, label: o.communicator(), born: interval}
		s.pend[k] = e
	} else {
		for _, a := range e.arrived {
			if a.rank == o.rank {
				return out // the same rank twice (two files of one process): keep the first
			}
		}
	}
	e.arrived = append(e.arrived, arrival{rank: o.rank, host: o.host, startUs: o.startUs, execUs: o.execUs, selfUs: self, proc: p})
	return append(out, s.completeIfFull(e)...)
}

func (s *skewer) completeIfFull(e *pending) []skewResult {
	if len(e.arrived) < e.nranks {
		return nil
	}
	delete(s.pend, e.key)
	return s.finish(e)
}

// evictOldest finishes the oldest tenth of the pending collectives with the ranks they have.
func (s *skewer) evictOldest() []skewResult {
	all := make([]*pending, 0, len(s.pend))
	for _, e := range s.pend {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].born != all[j].born {
			return all[i].born < all[j].born
		}
		return all[i].key.seq < all[j].key.seq
	})
	n := max(1, len(all)/10)
	var out []skewResult
	for _, e := range all[:n] {
		delete(s.pend, e.key)
		s.evicted++
		out = append(out, s.finish(e)...)
	}
	return out
}

// expire finishes the collectives that have waited wait_intervals for their other ranks.
func (s *skewer) expire(interval uint64) []skewResult {
	var out []skewResult
	for k, e := range s.pend {
		if interval-e.born >= uint64(s.cfg.Wait) {
			delete(s.pend, k)
			out = append(out, s.finish(e)...)
		}
	}
	return out
}

func (s *skewer) finish(e *pending) []skewResult {
	base := skewResult{name: e.key.name, label: e.label, bucket: e.bucket, nranks: e.nranks, lateRank: -1, rank: -1}
	if len(e.arrived) == 1 {
		a := e.arrived[0]
		if math.IsNaN(a.selfUs) {
			return nil
		}
		r := base
		r.basis, r.skewS, r.rank, r.proc = "self_history", a.selfUs/1e6, a.rank, a.proc
		return []skewResult{r}
	}
	r := base
	if s.comparableStarts(e.arrived) {
		first, last := e.arrived[0], e.arrived[0]
		for _, a := range e.arrived[1:] {
			if a.startUs < first.startUs {
				first = a
			}
			if a.startUs > last.startUs || (a.startUs == last.startUs && a.rank < last.rank) {
				last = a
			}
		}
		r.basis, r.skewS, r.proc = "timestamps", float64(last.startUs-first.startUs)/1e6, last.proc
		r.lateRank = last.rank
	} else if barrierLike[e.key.name] {
		short, long := e.arrived[0], e.arrived[0]
		for _, a := range e.arrived[1:] {
			if a.execUs < short.execUs || (a.execUs == short.execUs && a.rank < short.rank) {
				short = a
			}
			if a.execUs > long.execUs {
				long = a
			}
		}
		r.basis, r.skewS, r.proc = "durations", (long.execUs-short.execUs)/1e6, short.proc
		r.lateRank = short.rank
	} else {
		return nil
	}
	if r.skewS < s.cfg.MinSkew.Seconds() {
		r.lateRank = -1
	}
	return []skewResult{r}
}

// comparableStarts says whether the ranks' start times are on one clock.
func (s *skewer) comparableStarts(as []arrival) bool {
	for _, a := range as {
		if a.startUs == 0 {
			return false
		}
		if s.cfg.Clocks != "synchronized" && a.host != as[0].host {
			return false
		}
	}
	return true
}

// forget drops the state that refers to a process that is gone.
func (s *skewer) forget(p *proc) {
	for k := range s.hist {
		if k.proc == p {
			delete(s.hist, k)
		}
	}
	for k, e := range s.pend {
		kept := e.arrived[:0]
		for _, a := range e.arrived {
			if a.proc != p {
				kept = append(kept, a)
			}
		}
		e.arrived = kept
		if len(kept) == 0 {
			delete(s.pend, k)
		}
	}
}
