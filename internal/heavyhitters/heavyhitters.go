// Package heavyhitters decides which keys (tenants, prompt families, models) get one of a bounded number of
// slots of their own, so that the busiest keys of the recent past hold them rather than the first ones seen.
//
// Each key's weight is a count of its events with exponential decay (a half-life): a tenant that was busy an
// hour ago and silent since fades, a tenant that is busy now grows. Keys without a slot are counted in a
// second bounded table with the space-saving algorithm (Metwally et al.), which over-estimates a newcomer's
// count by at most the weight it inherited; only a key whose guaranteed weight beats the weakest slot holder
// by one event at the current time takes that slot. So a stream of one-off keys never displaces a busy key,
// a busy newcomer wins a slot after a few events, and two keys of equal weight do not swap back and forth.
//
// Weights use forward decay: an event at time t adds exp(lambda*(t-landmark)), which keeps the order of
// keys fixed between their own events, so both tables are heaps that only move the key an event touches.
// Weights are kept as logarithms so they never overflow however long the process runs.
package heavyhitters

import (
	"container/heap"
	"math"
	"time"
)

// Tracker is not safe for concurrent use; its owner serializes access.
type Tracker struct {
	capacity  int
	lambda    float64 // per nanosecond
	landmark  int64
	anchored  bool
	held      table
	waiting   table
	evictions int
}

// New returns a tracker with capacity slots whose weights halve every halfLife (at least one second).
func New(capacity int, halfLife time.Duration) *Tracker {
	if capacity < 1 {
		capacity = 1
	}
	if halfLife < time.Second {
		halfLife = time.Second
	}
	return &Tracker{
		capacity: capacity, lambda: math.Ln2 / float64(halfLife),
		held: newTable(), waiting: newTable(),
	}
}

// Observe counts one event of key at time at (unix ns) and says whether key holds a slot now; evicted is
// the key that lost its slot to it, "" when none did.
func (t *Tracker) Observe(key string, at int64) (held bool, evicted string) {
	if !t.anchored {
		t.landmark, t.anchored = at, true
	}
	w := t.lambda * float64(at-t.landmark) // log of this event's weight
	if e := t.held.index[key]; e != nil {
		e.score = logAdd(e.score, w)
		heap.Fix(&t.held, e.pos)
		return true, ""
	}
	if t.held.Len() < t.capacity {
		t.held.push(&entry{key: key, score: w, err: math.Inf(-1)})
		return true, ""
	}
	c := t.waiting.index[key]
	if c != nil {
		c.score = logAdd(c.score, w)
		heap.Fix(&t.waiting, c.pos)
	} else {
		if t.waiting.Len() >= t.capacity {
			// Space-saving: the newcomer replaces the lightest waiting key and inherits its weight as error.
			lightest := heap.Pop(&t.waiting).(*entry)
			delete(t.waiting.index, lightest.key)
			c = &entry{key: key, score: logAdd(lightest.score, w), err: lightest.score}
		} else {
			c = &entry{key: key, score: w, err: math.Inf(-1)}
		}
		t.waiting.push(c)
	}
	weakest := t.held.entries[0]
	if guaranteed(c) < logAdd(weakest.score, w) {
		return false, ""
	}
	heap.Remove(&t.waiting, c.pos)
	delete(t.waiting.index, c.key)
	heap.Pop(&t.held)
	delete(t.held.index, weakest.key)
	t.held.push(&entry{key: c.key, score: guaranteed(c), err: math.Inf(-1)})
	// The displaced key keeps its weight among the waiting, so it can win its slot back by being busy.
	if t.waiting.Len() >= t.capacity {
		lightest := heap.Pop(&t.waiting).(*entry)
		delete(t.waiting.index, lightest.key)
	}
	t.waiting.push(&entry{key: weakest.key, score: weakest.score, err: math.Inf(-1)})
	t.evictions++
	return true, weakest.key
}

// Holds says whether key has a slot, without counting an event.
func (t *Tracker) Holds(key string) bool { return t.held.index[key] != nil }

// Len is the number of keys holding a slot.
func (t *Tracker) Len() int { return t.held.Len() }

// Evictions counts the slots that changed hands.
func (t *Tracker) Evictions() int { return t.evictions }

// guaranteed is the weight a waiting key certainly has: its estimate less what it inherited.
func guaranteed(e *entry) float64 {
	if math.IsInf(e.err, -1) {
		return e.score
	}
	if e.err >= e.score {
		return math.Inf(-1)
	}
	return e.score + math.Log1p(-math.Exp(e.err-e.score))
}

// logAdd is log(exp(a) + exp(b)) without overflow.
func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if b > a {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

type entry struct {
	key   string
	score float64 // log of the decayed count
	err   float64 // log of the inherited over-estimate; -Inf when none
	pos   int
}

// table is a min-heap of entries by score with an index by key.
type table struct {
	entries []*entry
	index   map[string]*entry
}

func newTable() table { return table{index: map[string]*entry{}} }

func (t *table) push(e *entry) {
	t.index[e.key] = e
	heap.Push(t, e)
}

func (t table) Len() int           { return len(t.entries) }
func (t table) Less(i, j int) bool { return t.entries[i].score < t.entries[j].score }
func (t table) Swap(i, j int) {
	t.entries[i], t.entries[j] = t.entries[j], t.entries[i]
	t.entries[i].pos, t.entries[j].pos = i, j
}

func (t *table) Push(x any) {
	e := x.(*entry)
	e.pos = len(t.entries)
	t.entries = append(t.entries, e)
}

func (t *table) Pop() any {
	old := t.entries
	e := old[len(old)-1]
	old[len(old)-1] = nil
	t.entries = old[:len(old)-1]
	return e
}

// Place counts one event of key at time at and returns the name it goes by: key while it holds a slot,
// fallback (`_other`, or "" for "no slot") otherwise. The key it displaced, if any, goes to evict, so the
// owner can drop what it kept for it.
func (t *Tracker) Place(key string, at int64, fallback string, evict func(string)) string {
	held, evicted := t.Observe(key, at)
	if evicted != "" && evict != nil {
		evict(evicted)
	}
	if !held {
		return fallback
	}
	return key
}
