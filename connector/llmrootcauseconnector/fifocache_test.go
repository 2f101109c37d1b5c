package llmrootcauseconnector

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
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
	assert.Len(t, c.entries, 3)
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
