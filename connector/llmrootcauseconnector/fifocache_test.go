package llmrootcauseconnector

import (
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The cache keeps its bound, forgetting the oldest first.
func TestFIFOCacheForgetsTheOldest(t *testing.T) {
	c := newFIFOCache[int, int](3)
	for i := range 5 {
		c.put(i, i*10)
	}
	for i := range 2 {
		_, ok := c.get(i)
		assert.False(t, ok, "entry %d outlived the bound", i)
	}
	for i := 2; i < 5; i++ {
		v, ok := c.get(i)
		assert.True(t, ok)
		assert.Equal(t, i*10, v)
	}
	c.put(4, 41) // an update is no new entry
	_, ok := c.get(2)
	assert.True(t, ok)
	assert.Equal(t, 3, c.len())
}

// A key whose hash finds another key's entry is not that entry: two request ids of one hash never share a
// tenant.
func TestFIFOCacheConfirmsTheKey(t *testing.T) {
	c := newFIFOCache[string, int](8)
	c.put("cmpl-a", 1)
	// What a collision looks like from inside: cmpl-b's hash leads to cmpl-a's place.
	hb := maphash.Comparable(c.seed, "cmpl-b")
	slot, _ := c.find(hb)
	c.index[slot] = fifoSlot{hb, 1}
	_, ok := c.get("cmpl-b")
	assert.False(t, ok)
	v, ok := c.get("cmpl-a")
	assert.True(t, ok)
	assert.Equal(t, 1, v)
}

// Against a reference: through many inserts, updates and evictions over an index that grows and wraps, the
// cache holds exactly the size newest keys, each with its latest value. Small key ranges make keys come back
// while still held (updates) and after being forgotten.
func TestFIFOCacheMatchesAReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{1, 2, 7, 100, 1000} {
		c := newFIFOCache[int, int](size)
		var order []int // the reference: keys held, oldest first
		latest := map[int]int{}
		for i := range 20000 {
			k := rng.IntN(3 * size)
			if _, held := latest[k]; !held {
				order = append(order, k)
				if len(order) > size {
					delete(latest, order[0])
					order = order[1:]
				}
			}
			latest[k] = i
			c.put(k, i)
			if i%97 == 0 || i > 19900 {
				require.Equal(t, len(latest), c.len(), "size %d after %d puts", size, i+1)
				for key := range 3 * size {
					want, held := latest[key]
					got, ok := c.get(key)
					require.Equal(t, held, ok, "size %d, key %d after %d puts", size, key, i+1)
					require.Equal(t, want, got, "size %d, key %d after %d puts", size, key, i+1)
				}
			}
		}
	}
}

func BenchmarkFIFOCachePut(b *testing.B) {
	ids := make([]string, 1<<18)
	for i := range ids {
		ids[i] = "cmpl-" + strconv.Itoa(i)
	}
	c := newFIFOCache[string, who](65536)
	for i := range 100000 {
		c.put(ids[i%len(ids)], who{tenant: "t"})
	}
	for i := 0; b.Loop(); i++ {
		c.put(ids[(100000+i)%len(ids)], who{tenant: "t"})
	}
}

// An empty cache costs next to nothing, whatever its bound: an idle sidecar holds no request ids.
func TestFIFOCacheAllocatesAsItFills(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newFIFOCache[spanKey, who](1 << 20)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	assert.Less(t, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc), uint64(1<<20), "an empty cache of 1M entries holds %d bytes", after.HeapAlloc-before.HeapAlloc)
}
