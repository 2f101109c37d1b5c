package fleetstate

import (
	"math"
	"sort"
)

// A replica's usual levels (running batch, prefix-cache hit ratio, time to first token) come from its healthy
// time only: the caller marks what was unhealthy (slow requests, open incidents), and what it marked is left
// out. The levels are exponentially weighted over a long horizon (Config.UsualHalfLife), not taken over the
// window, so an incident longer than the window does not become the usual, and with no healthy time at all
// the usual is unknown rather than the incident.
//
// Snapshots still in the window are read as they stand, so a mark made after the fact (a request found slow
// when it ended) still counts; a snapshot leaving the window is folded into fixed-size sums, with the marks
// known by then. Memory per replica is the window plus a bounded histogram and a bounded list of marks.

// interval is a closed time range, unix ns.
type interval struct{ from, to int64 }

// maxUnhealthyMarks bounds a replica's marks; beyond it the two oldest are merged into one (which can only
// mark more time unhealthy, never less).
const maxUnhealthyMarks = 256

// healthMarks are a replica's unhealthy intervals, sorted and disjoint.
type healthMarks []interval

// add merges [from, to] into the marks.
func (m healthMarks) add(from, to int64) healthMarks {
	i := sort.Search(len(m), func(i int) bool { return m[i].to >= from })
	j := i
	for j < len(m) && m[j].from <= to {
		from, to = min(from, m[j].from), max(to, m[j].to)
		j++
	}
	m = append(m[:i], append([]interval{{from, to}}, m[j:]...)...)
	if len(m) > maxUnhealthyMarks {
		m[1].from = m[0].from
		m = m[1:]
	}
	return m
}

// forgetBefore drops marks that end before t: nothing left to judge is that old.
func (m healthMarks) forgetBefore(t int64) healthMarks {
	i := sort.Search(len(m), func(i int) bool { return m[i].to >= t })
	if i == 0 {
		return m
	}
	return append(m[:0], m[i:]...)
}

// overlaps reports whether a mark meets [from, to].
func (m healthMarks) overlaps(from, to int64) bool {
	i := sort.Search(len(m), func(i int) bool { return m[i].to >= from })
	return i < len(m) && m[i].from <= to
}

// covers reports whether one mark holds all of [from, to].
func (m healthMarks) covers(from, to int64) bool {
	i := sort.Search(len(m), func(i int) bool { return m[i].to >= to })
	return i < len(m) && m[i].from <= from
}

// decayedHistogram is an exponentially weighted histogram of a non-negative level: width-1 buckets below
// exactBelow (batch sizes are small integers), 5 % wide ones above, at most maxLevelBuckets. Each bucket keeps
// its weight and its weighted sum, so a quantile is the mean of the values in its bucket, exact for integers.
type decayedHistogram struct{ weight, sum []float64 }

const (
	exactBelow      = 32
	levelGrowth     = 1.05
	maxLevelBuckets = 320
)

func levelBucket(v float64) int {
	if v < exactBelow {
		return int(v)
	}
	return min(maxLevelBuckets-1, exactBelow+int(math.Log(v/exactBelow)/math.Log(levelGrowth)))
}

func (h *decayedHistogram) add(v, w float64) {
	b := levelBucket(v)
	for len(h.weight) <= b {
		h.weight, h.sum = append(h.weight, 0), append(h.sum, 0)
	}
	h.weight[b] += w
	h.sum[b] += w * v
}

func (h *decayedHistogram) scale(f float64) {
	for i := range h.weight {
		h.weight[i] *= f
		h.sum[i] *= f
	}
}

// median is the weighted median, NaN when empty.
func (h *decayedHistogram) median() float64 {
	total := 0.0
	for _, w := range h.weight {
		total += w
	}
	if !(total > 0) {
		return math.NaN()
	}
	seen := 0.0
	for i, w := range h.weight {
		if seen += w; w > 0 && seen >= total/2 {
			return h.sum[i] / w
		}
	}
	return math.NaN()
}

func (h *decayedHistogram) copyTo(dst *decayedHistogram) {
	dst.weight = append(dst.weight[:0], h.weight...)
	dst.sum = append(dst.sum[:0], h.sum...)
}

// usualSums are the healthy levels that have left the window, weighted 2^((t - landmark) / half-life): a newer
// observation weighs more, and the sums need no decaying pass, only a rescale now and then.
type usualSums struct {
	landmark           int64
	started            bool
	hits, queries      float64
	ttftSum, ttftCount float64
	running            decayedHistogram
}

// rescaleAfter is how many half-lives the landmark may fall behind before the sums are rescaled, far from
// any overflow.
const rescaleAfter = 64

func (u *usualSums) weight(t int64, halfLife float64) float64 {
	return math.Exp2(float64(t-u.landmark) / halfLife)
}

// keepNear moves the landmark up to t when it has fallen far behind, scaling the sums to match.
func (u *usualSums) keepNear(t int64, halfLife float64) {
	if !u.started {
		u.landmark, u.started = t, true
		return
	}
	if lag := float64(t-u.landmark) / halfLife; lag > rescaleAfter {
		f := math.Exp2(-lag)
		u.hits, u.queries, u.ttftSum, u.ttftCount = u.hits*f, u.queries*f, u.ttftSum*f, u.ttftCount*f
		u.running.scale(f)
		u.landmark = t
	}
}

// fold adds what one snapshot, and the interval from it to the next, say about the usual; the replica's
// snapshots leaving the window come through here.
func (u *usualSums) fold(old, next EngineSnapshot, marks healthMarks, halfLife float64) {
	u.foldLevel(old, marks, u.weight(old.Time, halfLife))
	u.foldInterval(old, next, marks, u.weight(next.Time, halfLife))
}

// foldLevel adds a snapshot's running batch, weighing w, when it was taken in healthy time.
func (u *usualSums) foldLevel(sn EngineSnapshot, marks healthMarks, w float64) {
	if !math.IsNaN(sn.Running) && !marks.overlaps(sn.Time, sn.Time) {
		u.running.add(sn.Running, w)
	}
}

// foldInterval adds the counters' growth from old to next, weighing w, when no mark meets that interval.
func (u *usualSums) foldInterval(old, next EngineSnapshot, marks healthMarks, w float64) {
	if next.Time <= old.Time || marks.overlaps(old.Time, next.Time) {
		return
	}
	if q, h := growth(old.PrefixQueries, next.PrefixQueries), growth(old.PrefixHits, next.PrefixHits); q > 0 && !math.IsNaN(h) {
		u.queries += w * q
		u.hits += w * h
	}
	if n, total := growth(old.TTFTCount, next.TTFTCount), growth(old.TTFTSum, next.TTFTSum); n > 0 && !math.IsNaN(total) {
		u.ttftCount += w * n
		u.ttftSum += w * total
	}
}

// growth is a cumulative counter's growth from a to b, reset-aware like counterDelta; NaN when either is.
func growth(a, b float64) float64 {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		return math.NaN()
	case b >= a:
		return b - a
	default:
		return b
	}
}

// refreshUsual recomputes the replica's usual levels from what has left the window and the healthy part of
// what is in it. scratch is the store's, reused (the caller holds the write lock).
func (r *replica) refreshUsual(halfLife float64, scratch *usualSums) {
	*scratch = usualSums{
		landmark: r.folded.landmark, started: true, running: scratch.running,
		hits: r.folded.hits, queries: r.folded.queries, ttftSum: r.folded.ttftSum, ttftCount: r.folded.ttftCount,
	}
	r.folded.running.copyTo(&scratch.running)
	// Each snapshot weighs what it is taken at, and so does the interval that ends at it.
	for i := 0; i < r.snaps.n; i++ {
		sn := r.snaps.at(i)
		w := scratch.weight(sn.Time, halfLife)
		scratch.foldLevel(sn, r.unhealthy, w)
		if i > 0 {
			scratch.foldInterval(r.snaps.at(i-1), sn, r.unhealthy, w)
		}
	}
	r.runningUsual = scratch.running.median()
	r.hitRatioUsual, r.ttftUsual = math.NaN(), math.NaN()
	if scratch.queries > 0 {
		r.hitRatioUsual = math.Min(1, scratch.hits/scratch.queries)
	}
	if scratch.ttftCount > 0 {
		r.ttftUsual = scratch.ttftSum / scratch.ttftCount
	}
}
