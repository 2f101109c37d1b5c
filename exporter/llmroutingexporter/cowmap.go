package llmroutingexporter

import (
	"hash/maphash"
	"maps"
)

// A shardedMap is split in two levels, fanout groups of fanout shards each, so that a batch copies only
// the parts it changes: the array of group pointers (256 bytes), each group it touches (256 bytes) and
// each shard it touches (with 300k pools, ~300 of them). One level would make every batch copy the whole
// array of shard pointers, which costs more than the rest of a small batch.
const fanout = 32

var shardSeed = maphash.MakeSeed()

// shardedMap is one published version of a map; it is never changed once readers can see it. A writer
// makes the next version with a cowWriter, which shares every group and shard it does not change.
type shardedMap[V any] struct {
	groups [fanout]*shardGroup[V]
	size   int
}

type shardGroup[V any] struct {
	shards [fanout]map[string]V
}

func shardOf(key string) (group, shard int) {
	h := maphash.String(shardSeed, key)
	return int(h % fanout), int(h / fanout % fanout)
}

func (m *shardedMap[V]) Get(key string) (V, bool) {
	g, s := shardOf(key)
	if m.groups[g] == nil {
		var zero V
		return zero, false
	}
	v, ok := m.groups[g].shards[s][key]
	return v, ok
}

func (m *shardedMap[V]) Len() int { return m.size }

// Range calls yield for every entry, in no particular order, until it returns false.
func (m *shardedMap[V]) Range(yield func(string, V) bool) {
	for _, g := range m.groups {
		if g == nil {
			continue
		}
		for _, shard := range g.shards {
			for k, v := range shard {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// cowWriter changes next, a copy of a published shardedMap (its array of groups only), copying a group
// and a shard the first time it changes them.
type cowWriter[V any] struct {
	next         *shardedMap[V]
	copiedGroups uint32         // bit g: next.groups[g] is this writer's own
	copiedShards [fanout]uint32 // bit s of [g]: next.groups[g].shards[s] is this writer's own
}

func (w *cowWriter[V]) own(key string) map[string]V {
	g, s := shardOf(key)
	if w.copiedGroups&(1<<g) == 0 {
		group := &shardGroup[V]{}
		if w.next.groups[g] != nil {
			*group = *w.next.groups[g]
		}
		w.next.groups[g] = group
		w.copiedGroups |= 1 << g
	}
	group := w.next.groups[g]
	if w.copiedShards[g]&(1<<s) == 0 {
		if group.shards[s] == nil {
			group.shards[s] = map[string]V{}
		} else {
			group.shards[s] = maps.Clone(group.shards[s])
		}
		w.copiedShards[g] |= 1 << s
	}
	return group.shards[s]
}

func (w *cowWriter[V]) Set(key string, v V) {
	shard := w.own(key)
	if _, ok := shard[key]; !ok {
		w.next.size++
	}
	shard[key] = v
}

func (w *cowWriter[V]) Delete(key string) {
	if _, ok := w.next.Get(key); !ok {
		return
	}
	delete(w.own(key), key)
	w.next.size--
}
