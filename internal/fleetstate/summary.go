package fleetstate

import (
	"math"
	"sort"
	"time"
)

// Summary is a replica's state over one interval (a request's lifetime). NaN means unknown: the engine or
// GPU did not report that quantity, or no snapshot covered the interval.
type Summary struct {
	Replica string
	Model   string
	Engine  string

	// HasEngine is true when an engine snapshot covers the interval's start (at or before it, within the window).
	HasEngine bool
	// Complete is true when a snapshot at or after the interval's end was seen: nothing later can change it.
	Complete bool

	// StateAge is the age at the interval's end (s) of the newest engine snapshot its levels (WaitingMax and
	// the like) come from: 0 when one was taken at the end, 60 when the engine went unscraped for the last
	// minute of it; NaN when no snapshot describes it.
	StateAge float64

	// WaitingAtArrival is the queue at the snapshot at or before the interval's start.
	WaitingAtArrival float64
	// WaitingMax, RunningMax and KVUtilizationMax are the highest levels in the snapshots taken within the
	// interval, or, when none was, in the one at or before its start (the state it ran in); never in one
	// taken after its end.
	WaitingMax float64
	// QueueGrowthPerMinute compares the queue at arrival with the queue up to a minute earlier, as a ratio
	// per minute ((waiting+1) / (earlier waiting+1), scaled to 60 s); 1 is flat.
	QueueGrowthPerMinute float64
	// WaitingEarlier is the queue that growth compares with, WaitingEarlierAge how long before arrival (s).
	WaitingEarlier, WaitingEarlierAge float64
	RunningMax                        float64
	// RunningUsual is the replica's usual running batch: an exponentially weighted median (Config.UsualHalfLife)
	// over its healthy time (see MarkUnhealthy), NaN when it had none.
	RunningUsual     float64
	KVUtilizationMax float64
	// Preemptions grew this much between the scrapes that bracket the interval (the last at or before its
	// start, the first at or after its end).
	Preemptions float64
	// PrefixHitRatio is the prefix-cache hit ratio over the scrapes that bracket the interval, widened back
	// scrape by scrape (RecentLookback at most) until Config.MinPrefixQueries tokens were looked up; NaN when
	// even that saw fewer. PrefixQueries is the tokens it is over, PrefixHitRatioWindow the seconds it covers,
	// PrefixHitRatioWidened how many of them lie before the bracket (0: the bracket alone sufficed).
	// PrefixHitRatioBracket is the bracket's own ratio, however few tokens it saw (NaN for none): set beside a
	// widened PrefixHitRatio it shows a change of regime within the window.
	PrefixHitRatio        float64
	PrefixQueries         float64
	PrefixHitRatioWindow  float64
	PrefixHitRatioWidened float64
	PrefixHitRatioBracket float64
	// PrefixHitRatioUsual is the replica's usual hit ratio, exponentially weighted over its healthy time
	// (like RunningUsual), NaN when it had none.
	PrefixHitRatioUsual float64

	// Rates (per second) and counter deltas between the scrapes that bracket the interval; NaN when the engine
	// does not report them or no two snapshots bracket it.
	FinishedRate float64
	// ArrivalRate is requests arriving per second over the same bracket: those that finished plus the growth
	// of the replica's waiting and running requests (what came in and stayed). It is the offered load,
	// which completions alone understate while a queue builds; NaN without the finished counter or levels.
	ArrivalRate float64
	// Saturated is true when requests were waiting at every scrape of the bracket and the running batch did
	// not grow across it: work queued the whole time behind a full batch, so the replica's completions over
	// it are what it can serve, not what it was sent.
	Saturated    bool
	PromptTokens float64
	GenTokens    float64
	// TTFTMean is the mean time to first token of the requests that got one between the bracketing scrapes;
	// TTFTUsual over the replica's healthy time (like RunningUsual).
	TTFTMean  float64
	TTFTUsual float64
	// MaxRunning is the engine's configured capacity (latest), NaN when it does not report one.
	MaxRunning float64
	// MarkedUnhealthy is true when time the caller marked unhealthy (MarkUnhealthy: a slow request, an open
	// incident) meets the interval: what ran then is no example of the replica's healthy pace.
	MarkedUnhealthy bool
	// Newest is the time of the replica's newest engine snapshot (unix ns), 0 when none.
	Newest int64

	// GPU levels (utilization, memory, clocks, throttling) come from the GPU snapshots within the interval, or
	// the one at or before its start when none was, like WaitingMax; XIDErrors between the bracketing ones.
	HasGPU             bool
	GPUUtilizationMean float64
	// GPUUtilization is each of the replica's GPUs' mean utilization over the interval, by hw.id.
	GPUUtilization map[string]float64
	// GPUNames is each GPU's product name, by hw.id.
	GPUNames                map[string]string
	GPUMemoryUtilizationMax float64
	// GPUMemoryGrowth is the fastest growth of one GPU's memory utilization across the interval (per second,
	// from the snapshot at or before its start to the last one within it), NaN with fewer than two snapshots.
	GPUMemoryGrowth float64
	// GPUMemoryUtilizationNow is the highest GPU memory utilization at the interval's end (the last snapshot
	// at or before it).
	GPUMemoryUtilizationNow float64
	// SMClockRatio is the lowest SM clock a busy GPU of the replica ran at during the interval, over the
	// highest that GPU reached in the window (1: full speed); NaN without clock readings. A drop while busy is
	// throttling even where no throttle reason is reported (dcgm-exporter gives them as one bitmask).
	SMClockRatio    float64
	ThrottleReasons []string
	XIDErrors       float64
	// GPUPositions places each GPU whose parallel position is known (tp rank, pp stage, group), by hw.id.
	GPUPositions map[string]GPUPosition

	// Collective communication (the nccl receiver), from the receiver's batches that cover part of the interval.
	// CollectiveObservable is 1 when the receiver says the replica's collective time can be seen, 0 when it
	// says it cannot (CollectiveObservableReason says why), NaN when nothing was said.
	CollectiveObservable       float64
	CollectiveObservableReason string
	// CollectiveWaitShare is the share of time the replica's collectives spent waiting for their last rank: arrival
	// skew per communicator over the time covered, a lower bound where NCCL records only a sample of operations.
	CollectiveWaitShare float64
	// CollectiveSkewMean is the mean arrival skew of one collective (s); CollectiveMeanDuration the mean
	// execution time of one operation on one rank (s), over CollectiveOperations operations.
	CollectiveSkewMean     float64
	CollectiveMeanDuration float64
	CollectiveOperations   float64
	// CollectiveLateRank names the rank the others waited for most ("tp rank 1, pp stage 0, communicator X"),
	// CollectiveLateShare its share of the waiting; "" and NaN when no late rank was named.
	CollectiveLateRank  string
	CollectiveLateShare float64
}

// RecentLookback is how far state may lie from an interval and still describe it: the most a hit ratio is
// widened back (a 300 ms request may see too few tokens looked up between two scrapes), and how far before
// an interval a GPU's last snapshot may be.
const RecentLookback = time.Minute

func engineTime(s EngineSnapshot) int64 { return s.Time }
func gpuTime(s GPUSnapshot) int64       { return s.Time }

// Summarize describes replica key over [from, to] (unix ns).
func (s *Store) Summarize(key string, from, to int64) Summary {
	nan := math.NaN()
	sum := Summary{
		Replica: key, StateAge: nan, PrefixQueries: nan, PrefixHitRatioWindow: nan, PrefixHitRatioWidened: nan, PrefixHitRatioBracket: nan,
		WaitingAtArrival: nan, WaitingMax: nan, QueueGrowthPerMinute: nan, WaitingEarlier: nan, WaitingEarlierAge: nan, RunningMax: nan,
		RunningUsual: nan, KVUtilizationMax: nan, Preemptions: nan, PrefixHitRatio: nan, PrefixHitRatioUsual: nan,
		FinishedRate: nan, ArrivalRate: nan, PromptTokens: nan, GenTokens: nan, TTFTMean: nan, TTFTUsual: nan, MaxRunning: nan,
		GPUUtilizationMean: nan, GPUMemoryUtilizationMax: nan, GPUMemoryGrowth: nan, GPUMemoryUtilizationNow: nan, SMClockRatio: nan, XIDErrors: nan,
		CollectiveObservable: nan, CollectiveWaitShare: nan, CollectiveSkewMean: nan, CollectiveMeanDuration: nan, CollectiveOperations: nan, CollectiveLateShare: nan,
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.replicas[key]
	if r != nil {
		sum.Model, sum.Engine, sum.Newest = r.model, r.engine, r.lastSeen
		if r.snaps.n > 0 {
			sum.MaxRunning = r.snaps.at(r.snaps.n - 1).MaxRunning
		}
		sum.RunningUsual, sum.PrefixHitRatioUsual, sum.TTFTUsual = r.runningUsual, r.hitRatioUsual, r.ttftUsual
		sum.MarkedUnhealthy = r.unhealthy.overlaps(from, to)
		summarizeEngine(&r.snaps, from, to, s.cfg.MinPrefixQueries, &sum)
	}
	var gpus []*gpu
	switch {
	case r != nil && len(s.replicas) == 1:
		// A lone replica (a sidecar) has every GPU the store knows: the unattributed ones and those whose
		// resource names something that is no replica (a dcgm-exporter target's own host:port).
		for _, g := range s.gpus {
			gpus = append(gpus, g)
		}
	case key != "":
		for _, g := range s.byOwner[key] {
			gpus = append(gpus, g)
		}
	}
	summarizeGPUs(gpus, from, to, &sum)
	summarizeCollectives(s.replicaCollectives[key], from, to, &sum)
	return sum
}

// levelRange is the snapshots whose levels (gauges) describe [from, to], given the bracket [first, last]
// from span: those taken within it, else the one at or before from. ok is false when neither exists (all
// that is held was taken after to).
func levelRange[T any](snaps *ring[T], timeOf func(T) int64, first, last int, from, to int64) (lo, hi int, ok bool) {
	lo, hi = first, last
	if timeOf(snaps.at(lo)) < from {
		lo++
	}
	if timeOf(snaps.at(hi)) > to {
		hi--
	}
	if lo <= hi {
		return lo, hi, true
	}
	if timeOf(snaps.at(first)) <= from {
		return first, first, true
	}
	return 0, 0, false
}

func summarizeEngine(snaps *ring[EngineSnapshot], from, to int64, minPrefixQueries float64, sum *Summary) {
	first, last, ok := snaps.span(engineTime, from, to)
	// State from well after the request (a span replayed from before the window) says nothing about it.
	if !ok || snaps.at(first).Time > to+int64(RecentLookback) {
		return
	}
	arrival := snaps.at(first)
	sum.HasEngine = arrival.Time <= from
	sum.Complete = snaps.at(last).Time >= to
	if lo, hi, ok := levelRange(snaps, engineTime, first, last, from, to); ok {
		sum.WaitingAtArrival = arrival.Waiting
		for i := lo; i <= hi; i++ {
			sn := snaps.at(i)
			sum.WaitingMax = nanMax(sum.WaitingMax, sn.Waiting)
			sum.RunningMax = nanMax(sum.RunningMax, sn.Running)
			sum.KVUtilizationMax = nanMax(sum.KVUtilizationMax, sn.KVUtilization)
		}
		sum.StateAge = float64(to-snaps.at(hi).Time) / 1e9
	}
	sum.Preemptions = counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.Preemptions })

	// Queue trend: the snapshot nearest a minute before arrival, at least 10 s before it.
	for i := first - 1; i >= 0; i-- {
		earlier := snaps.at(i)
		dt := arrival.Time - earlier.Time
		if dt >= int64(10*time.Second) && (dt >= int64(time.Minute) || i == 0) && !math.IsNaN(earlier.Waiting) && !math.IsNaN(arrival.Waiting) {
			ratio := (arrival.Waiting + 1) / (earlier.Waiting + 1)
			if dt >= int64(time.Minute) {
				sum.QueueGrowthPerMinute = math.Pow(ratio, float64(time.Minute)/float64(dt))
			} else {
				// Less than a minute of history: extrapolate linearly; compounding a 10 s jump to a
				// minute would claim growth no queue has.
				sum.QueueGrowthPerMinute = math.Max(0, 1+(ratio-1)*float64(time.Minute)/float64(dt))
			}
			sum.WaitingEarlier, sum.WaitingEarlierAge = earlier.Waiting, float64(dt)/1e9
			break
		}
	}

	summarizePrefixCache(snaps, first, last, from, minPrefixQueries, sum)

	if dt := float64(snaps.at(last).Time-arrival.Time) / 1e9; dt > 0 {
		sum.FinishedRate = counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.Finished }) / dt
		end := snaps.at(last)
		if inside, before := end.Waiting+end.Running, arrival.Waiting+arrival.Running; !math.IsNaN(inside) && !math.IsNaN(before) && !math.IsNaN(sum.FinishedRate) {
			sum.ArrivalRate = math.Max(0, sum.FinishedRate+(inside-before)/dt)
		}
		// A batch still filling up finishes fewer requests than it holds: its completions lag behind what
		// the replica serves once full, so only a batch that has stopped growing counts.
		sum.Saturated = !(end.Running > arrival.Running*1.1+1)
		for i := first; sum.Saturated && i <= last; i++ {
			if w := snaps.at(i).Waiting; !(w >= 1) {
				sum.Saturated = false
				break
			}
		}
	}
	sum.PromptTokens = counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.PromptTokens })
	sum.GenTokens = counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.GenTokens })
	sum.TTFTMean = meanOf(snaps, first, last)
}

// summarizePrefixCache takes the hit ratio over the bracket [first, last], widened back one scrape at a time
// (no further than RecentLookback before from) until it holds minQueries looked-up tokens. Only as wide as
// the data needs: a minute-wide ratio is mostly the minute, and a collapse seconds old vanishes in it.
func summarizePrefixCache(snaps *ring[EngineSnapshot], first, last int, from int64, minQueries float64, sum *Summary) {
	queries := func(lo int) float64 {
		return counterDelta(snaps, lo, last, func(e EngineSnapshot) float64 { return e.PrefixQueries })
	}
	lo, q := first, queries(first)
	if q > 0 {
		sum.PrefixHitRatioBracket = hitRatio(snaps, first, last)
	}
	for !(q >= minQueries) && lo > 0 && snaps.at(lo-1).Time >= from-int64(RecentLookback) {
		lo--
		q = queries(lo)
	}
	if !(q >= minQueries) {
		return
	}
	sum.PrefixHitRatio = hitRatio(snaps, lo, last)
	if math.IsNaN(sum.PrefixHitRatio) {
		return
	}
	sum.PrefixQueries = q
	sum.PrefixHitRatioWindow = float64(snaps.at(last).Time-snaps.at(lo).Time) / 1e9
	sum.PrefixHitRatioWidened = float64(snaps.at(first).Time-snaps.at(lo).Time) / 1e9
}

// meanOf is the mean time to first token between two snapshots, from the histogram's sum and count.
func meanOf(snaps *ring[EngineSnapshot], first, last int) float64 {
	n := counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.TTFTCount })
	total := counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.TTFTSum })
	if !(n > 0) || math.IsNaN(total) {
		return math.NaN()
	}
	return total / n
}

func hitRatio(snaps *ring[EngineSnapshot], first, last int) float64 {
	q := counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.PrefixQueries })
	h := counterDelta(snaps, first, last, func(e EngineSnapshot) float64 { return e.PrefixHits })
	if math.IsNaN(q) || math.IsNaN(h) || q <= 0 {
		return math.NaN()
	}
	return math.Min(1, h/q)
}

// counterDelta is how much a cumulative counter grew between snapshots first and last; a drop is an engine
// restart, after which the new value is all growth.
func counterDelta[T any](snaps *ring[T], first, last int, value func(T) float64) float64 {
	delta, prev, seen := 0.0, math.NaN(), false
	for i := first; i <= last; i++ {
		v := value(snaps.at(i))
		if math.IsNaN(v) {
			continue
		}
		switch {
		case math.IsNaN(prev):
		case v >= prev:
			delta += v - prev
			seen = true
		default:
			delta += v
			seen = true
		}
		prev = v
	}
	if !seen {
		if first == last || math.IsNaN(prev) {
			return math.NaN()
		}
		return 0
	}
	return delta
}

func summarizeGPUs(gpus []*gpu, from, to int64, sum *Summary) {
	utilSum, utilN := 0.0, 0
	reasons := map[string]bool{}
	for _, g := range gpus {
		first, last, ok := g.snaps.span(gpuTime, from, to)
		if !ok {
			continue
		}
		// Levels from the GPU's snapshots within the interval (or the one it started in), not from after it,
		// and not from one more than RecentLookback older than the start: a GPU gone quiet says nothing.
		lo, hi, ok := levelRange(&g.snaps, gpuTime, first, last, from, to)
		if !ok || g.snaps.at(hi).Time < from-int64(RecentLookback) {
			continue
		}
		sum.HasGPU = true
		if sum.GPUUtilization == nil {
			sum.GPUUtilization, sum.GPUNames = map[string]float64{}, map[string]string{}
		}
		sum.GPUNames[g.id] = g.name
		if g.position != unknownPosition {
			if sum.GPUPositions == nil {
				sum.GPUPositions = map[string]GPUPosition{}
			}
			sum.GPUPositions[g.id] = g.position
		}
		own, ownN := 0.0, 0
		for i := lo; i <= hi; i++ {
			sn := g.snaps.at(i)
			sum.GPUMemoryUtilizationMax = nanMax(sum.GPUMemoryUtilizationMax, sn.MemoryUtilization)
			if !math.IsNaN(sn.Utilization) {
				utilSum += sn.Utilization
				utilN++
				own += sn.Utilization
				ownN++
			}
			for _, r := range sn.Throttle {
				reasons[r] = true
			}
		}
		if ownN > 0 {
			sum.GPUUtilization[g.id] = own / float64(ownN)
		}
		if peak := g.peakClock(); peak > 0 {
			for i := lo; i <= hi; i++ {
				if sn := g.snaps.at(i); sn.SMClock > 0 && sn.Utilization >= busyUtilization {
					sum.SMClockRatio = nanMin(sum.SMClockRatio, sn.SMClock/peak)
				}
			}
		}
		a, b := g.snaps.at(first), g.snaps.at(hi)
		sum.GPUMemoryUtilizationNow = nanMax(sum.GPUMemoryUtilizationNow, b.MemoryUtilization)
		if b.Time > a.Time && !math.IsNaN(a.MemoryUtilization) && !math.IsNaN(b.MemoryUtilization) {
			sum.GPUMemoryGrowth = nanMax(sum.GPUMemoryGrowth, (b.MemoryUtilization-a.MemoryUtilization)/(float64(b.Time-a.Time)/1e9))
		}
		if x := counterDelta(&g.snaps, first, last, func(s GPUSnapshot) float64 { return s.XIDErrors }); !math.IsNaN(x) {
			if math.IsNaN(sum.XIDErrors) {
				sum.XIDErrors = 0
			}
			sum.XIDErrors += x
		}
	}
	if utilN > 0 {
		sum.GPUUtilizationMean = utilSum / float64(utilN)
	}
	for r := range reasons {
		sum.ThrottleReasons = append(sum.ThrottleReasons, r)
	}
	sort.Strings(sum.ThrottleReasons)
}

// busyUtilization: below it a lower clock is the GPU idling down, not throttling.
const busyUtilization = 0.5

// peakClock is the highest SM clock the GPU ever reported.
func (g *gpu) peakClock() float64 {
	peak := g.peakSMClock
	for i := 0; i < g.snaps.n; i++ {
		if c := g.snaps.at(i).SMClock; c > peak {
			peak = c
		}
	}
	return peak
}

func nanMin(a, b float64) float64 {
	switch {
	case math.IsNaN(a):
		return b
	case math.IsNaN(b):
		return a
	}
	return math.Min(a, b)
}

func nanMax(a, b float64) float64 {
	switch {
	case math.IsNaN(a):
		return b
	case math.IsNaN(b):
		return a
	}
	return math.Max(a, b)
}
