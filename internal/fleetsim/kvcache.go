package fleetsim

// kvCache is a paged KV cache with prefix caching, the way vLLM V1 keeps it: fixed-size blocks with a
// reference count; a full block is known by the hash of the tokens it holds, so a later request whose prompt
// starts with the same tokens reuses it instead of computing it again. Blocks nobody references stay cached
// in a free queue and are taken for new allocations least recently freed first, which evicts their contents.
//
// It also keeps what vLLM V1's KV-cache residency metrics keep (--kv-cache-metrics; the collector in
// vllm/v1/core/kv_cache_metrics.py, fed by vllm/v1/core/block_pool.py): per block, when it was allocated and
// when it was last accessed, and its last few accesses. vLLM's clock for a block starts when the block is
// allocated and is reset by every prefix-cache hit on it (touch); freeing it does not touch it. When a block
// that is tracked is taken from the free queue for a new allocation, vLLM reports it as evicted, whether or
// not it still held cached content: its lifetime (since allocation), its idle time (since its last access)
// and the gaps between its recorded accesses. vLLM tracks a random sample of the blocks it allocates
// (--kv-cache-metrics-sample, 1% by default); the simulator tracks every block, as with a sample rate of 1,
// which keeps runs deterministic and gives short runs observations. Blocks never allocated since start carry
// no state, so taking them reports nothing.
type kvCache struct {
	blockSize int
	ref       []int32
	hash      []uint64 // content of a full, registered block; 0 when none
	byHash    map[uint64]int32
	// Free queue: a doubly linked list over block ids with a sentinel at index n.
	prev, next []int32
	free       int
	evictions  uint64 // cached blocks whose content was dropped to make room

	// Residency, in the simulation's seconds (see above).
	tracked    []bool
	born       []float64
	lastAccess []float64
	accesses   [][kvAccessHistory]float64 // the latest prefix-cache hits on the block, oldest first
	nAccesses  []uint8
	onEvict    func(blockResidency) // nil: nobody listens
}

// kvAccessHistory is how many accesses vLLM remembers per block (a deque of 4), hence at most three reuse
// gaps per eviction.
const kvAccessHistory = 4

// blockResidency is what vLLM records when a tracked block is evicted.
type blockResidency struct {
	lifetime float64 // since the block was allocated
	idle     float64 // since its last access: its allocation or the latest prefix-cache hit on it
	gaps     [kvAccessHistory - 1]float64
	nGaps    int // reuse gaps between consecutive recorded accesses
}

func newKVCache(blocks, blockSize int) *kvCache {
	c := &kvCache{
		blockSize: blockSize,
		ref:       make([]int32, blocks),
		hash:      make([]uint64, blocks),
		byHash:    make(map[uint64]int32),
		prev:      make([]int32, blocks+1),
		next:      make([]int32, blocks+1),

		tracked:    make([]bool, blocks),
		born:       make([]float64, blocks),
		lastAccess: make([]float64, blocks),
		accesses:   make([][kvAccessHistory]float64, blocks),
		nAccesses:  make([]uint8, blocks),
	}
	s := int32(blocks)
	c.prev[s], c.next[s] = s, s
	for b := int32(0); b < s; b++ {
		c.pushBack(b)
	}
	return c
}

func (c *kvCache) numBlocks() int { return len(c.ref) }

// usage is vLLM's kv_cache_usage_perc: the share of blocks not in the free queue (cached-but-free blocks
// count as free, since they can be taken at any time).
func (c *kvCache) usage() float64 {
	if len(c.ref) == 0 {
		return 0
	}
	return 1 - float64(c.free)/float64(len(c.ref))
}

func (c *kvCache) usedBlocks() int { return len(c.ref) - c.free }

func (c *kvCache) pushBack(b int32) {
	s := int32(len(c.ref))
	last := c.prev[s]
	c.next[last], c.prev[b] = b, last
	c.next[b], c.prev[s] = s, b
	c.free++
}

func (c *kvCache) unlink(b int32) {
	p, n := c.prev[b], c.next[b]
	c.next[p], c.prev[n] = n, p
	c.free--
}

// cachedPrefix returns the blocks holding the longest run of leading hashes, at most limit of them.
func (c *kvCache) cachedPrefix(hashes func(i int) uint64, limit int) []int32 {
	var hit []int32
	for i := 0; i < limit; i++ {
		b, ok := c.byHash[hashes(i)]
		if !ok {
			break
		}
		hit = append(hit, b)
	}
	return hit
}

// freeAmong counts the blocks of hit that sit in the free queue (taking them costs free capacity).
func (c *kvCache) freeAmong(hit []int32) int {
	n := 0
	for _, b := range hit {
		if c.ref[b] == 0 {
			n++
		}
	}
	return n
}

// acquire takes a reference on cached blocks at time t (a prefix-cache hit: vLLM's touch, an access).
func (c *kvCache) acquire(blocks []int32, t float64) {
	for _, b := range blocks {
		if c.ref[b] == 0 {
			c.unlink(b)
		}
		c.ref[b]++
		c.access(b, t)
	}
}

// access records a prefix-cache hit on a tracked block.
func (c *kvCache) access(b int32, t float64) {
	if !c.tracked[b] {
		return
	}
	c.lastAccess[b] = t
	h := &c.accesses[b]
	if n := c.nAccesses[b]; n < kvAccessHistory {
		h[n] = t
		c.nAccesses[b] = n + 1
		return
	}
	copy(h[:], h[1:])
	h[kvAccessHistory-1] = t
}

// evict reports a tracked block taken from the free queue at t, as vLLM's on_block_evicted does.
func (c *kvCache) evict(b int32, t float64) {
	if !c.tracked[b] || c.onEvict == nil {
		return
	}
	ev := blockResidency{lifetime: t - c.born[b], idle: t - c.lastAccess[b]}
	h := c.accesses[b]
	for i := 1; i < int(c.nAccesses[b]); i++ {
		ev.gaps[ev.nGaps] = h[i] - h[i-1]
		ev.nGaps++
	}
	c.onEvict(ev)
}

// allocate takes n blocks from the head of the free queue at time t, evicting whatever they cached. It fails
// without side effects when fewer than n are free.
func (c *kvCache) allocate(n int, t float64) ([]int32, bool) {
	if n > c.free {
		return nil, false
	}
	out := make([]int32, 0, n)
	s := int32(len(c.ref))
	for i := 0; i < n; i++ {
		b := c.next[s]
		c.unlink(b)
		c.evict(b, t)
		c.tracked[b], c.born[b], c.lastAccess[b], c.nAccesses[b] = true, t, t, 0
		if h := c.hash[b]; h != 0 {
			if c.byHash[h] == b {
				delete(c.byHash, h)
			}
			c.hash[b] = 0
			c.evictions++
		}
		c.ref[b] = 1
		out = append(out, b)
	}
	return out, true
}

// release drops a request's references. Blocks are queued last block first, so that under pressure the
// tail of a sequence is evicted before the prefix other requests are likelier to share.
func (c *kvCache) release(blocks []int32) {
	for i := len(blocks) - 1; i >= 0; i-- {
		b := blocks[i]
		c.ref[b]--
		if c.ref[b] == 0 {
			c.pushBack(b)
		}
	}
}

// register records the content of a block that has just become full. When another block already holds the
// same content (two requests computed the same prefix at once) the first keeps the entry.
func (c *kvCache) register(b int32, h uint64) {
	if c.hash[b] != 0 {
		return
	}
	if _, dup := c.byHash[h]; dup {
		return
	}
	c.hash[b] = h
	c.byHash[h] = b
}
