package llmrootcauseconnector

import (
	"hash/maphash"
	"math"
	"math/bits"
)

// fifoCache remembers at most size entries, forgetting the oldest first: bounded whatever the number of
// distinct request ids that pass through. The request-id caches take an insert, and once full a delete, for
// every gateway span, at thousands a second, in tables of 65,536 entries, so their layout is chosen for that:
//
//   - the entries live in a ring, in the order they came, and the index finds an entry's place in it from a
//     64-bit hash of its key, so an insert or a delete reads no key's bytes (request ids are strings);
//   - the index is open addressing with linear probing over a pointer-free table at most half full, and a
//     delete shifts the entries after it back instead of leaving a tombstone. A Go map keyed by the ids took a
//     microsecond per request for the two caches, most of it probing groups that deletes had left
//     tombstoned; this takes a fraction of that (BenchmarkFIFOCachePut).
//
// Two keys of one hash (about one in 10^10 for a full cache) share a place: the later replaces the earlier,
// which is then forgotten as the oldest would have been; a lookup confirms the key, so one is never taken for
// the other. The ring and the index grow to their bound as entries arrive rather than being allocated up
// front: two caches of the default 65,536 entries held 27 MiB of an idle sidecar's heap before any request came.
type fifoCache[K comparable, V any] struct {
	seed  maphash.Seed
	index []fifoSlot // a power of two long, at least twice the entries
	ring  []fifoEntry[K, V]
	next  int // the oldest entry, once the ring is full
	size  int
}

// fifoSlot is one place of the index: an entry's hash and its place in the ring plus one (0: empty).
type fifoSlot struct {
	hash  uint64
	entry int32
}

type fifoEntry[K comparable, V any] struct {
	hash  uint64
	key   K
	value V
}

func newFIFOCache[K comparable, V any](size int) *fifoCache[K, V] {
	// Places in the ring are int32s: a bound past two billion entries (tens of GiB) is taken as that.
	return &fifoCache[K, V]{seed: maphash.MakeSeed(), index: make([]fifoSlot, 16), size: min(max(size, 1), math.MaxInt32-1)}
}

func (c *fifoCache[K, V]) put(k K, v V) {
	h := maphash.Comparable(c.seed, k)
	slot, found := c.find(h)
	if found {
		// The same key updated, or (rarely) another of its hash replaced.
		c.ring[c.index[slot].entry-1] = fifoEntry[K, V]{h, k, v}
		return
	}
	if len(c.ring) < c.size {
		c.ring = append(c.ring, fifoEntry[K, V]{h, k, v})
		if 2*len(c.ring) > len(c.index) {
			c.grow()
			return // grow placed every entry, this one too
		}
		c.index[slot] = fifoSlot{h, int32(len(c.ring))}
		return
	}
	oldest := &c.ring[c.next]
	c.remove(oldest.hash)
	*oldest = fifoEntry[K, V]{h, k, v}
	slot, _ = c.find(h) // the removal may have shifted the free place this key would take
	c.index[slot] = fifoSlot{h, int32(c.next + 1)}
	c.next = (c.next + 1) % len(c.ring)
}

func (c *fifoCache[K, V]) get(k K) (V, bool) {
	if slot, found := c.find(maphash.Comparable(c.seed, k)); found {
		if e := &c.ring[c.index[slot].entry-1]; e.key == k {
			return e.value, true
		}
	}
	var zero V
	return zero, false
}

// len is how many entries the cache holds.
func (c *fifoCache[K, V]) len() int { return len(c.ring) }

// find returns the index slot holding hash h, or the empty slot where it would go.
func (c *fifoCache[K, V]) find(h uint64) (slot int, found bool) {
	mask := len(c.index) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch s := c.index[i]; {
		case s.entry == 0:
			return i, false
		case s.hash == h:
			return i, true
		}
	}
}

// remove takes hash h out of the index, moving back the entries after it that probed past its slot, so that
// every entry stays reachable from its home slot without a tombstone.
func (c *fifoCache[K, V]) remove(h uint64) {
	hole, found := c.find(h)
	if !found {
		return
	}
	mask := len(c.index) - 1
	for i := (hole + 1) & mask; c.index[i].entry != 0; i = (i + 1) & mask {
		// An entry may fill the hole when its home slot is not in (hole, i]: it probed across the hole.
		if home := int(c.index[i].hash) & mask; (i-home)&mask >= (i-hole)&mask {
			c.index[hole] = c.index[i]
			hole = i
		}
	}
	c.index[hole] = fifoSlot{}
}

// grow doubles the index until it is at least twice the entries, and places every entry again.
func (c *fifoCache[K, V]) grow() {
	n := 1 << bits.Len(uint(2*len(c.ring)-1))
	c.index = make([]fifoSlot, n)
	for i := range c.ring {
		slot, _ := c.find(c.ring[i].hash)
		c.index[slot] = fifoSlot{c.ring[i].hash, int32(i + 1)}
	}
}
