package heavyhitters

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ms = int64(time.Millisecond)

// The attack from the reliability review: 1,000 one-off tenants fill every slot in 30 ms; a tenant that is
// busy afterwards must win a slot, and further one-off tenants must not take it away.
func TestBusyLateKeyWinsASlotFromOneOffs(t *testing.T) {
	tr := New(1000, time.Hour)
	now := int64(0)
	for i := range 1000 {
		held, _ := tr.Observe(fmt.Sprintf("one-off-%d", i), now)
		require.True(t, held)
		now += 30 * ms / 1000
	}
	won := -1
	for i := range 10 {
		now += ms
		if held, evicted := tr.Observe("busy", now); held {
			won = i + 1
			assert.Contains(t, evicted, "one-off-")
			break
		}
		// one-offs keep arriving in between
		tr.Observe(fmt.Sprintf("late-one-off-%d", i), now)
	}
	require.Positive(t, won, "the busy tenant never got a slot")
	assert.LessOrEqual(t, won, 3, "a busy tenant should need only a few requests to beat one-off tenants")
	for i := range 100_000 {
		now += ms / 10
		tr.Observe(fmt.Sprintf("flood-%d", i), now)
		if i%100 == 0 {
			tr.Observe("busy", now)
		}
	}
	assert.True(t, tr.Holds("busy"), "one-off keys displaced a busy one")
	assert.Equal(t, 1000, tr.Len())
}

// One-off keys arriving after the slots are full do not churn them: no slot changes hands.
func TestOneOffKeysDoNotChurnTheSlots(t *testing.T) {
	tr := New(10, time.Hour)
	for i := range 10 {
		for range 3 {
			tr.Observe(fmt.Sprintf("regular-%d", i), int64(i)*ms)
		}
	}
	for i := range 10_000 {
		held, evicted := tr.Observe(fmt.Sprintf("one-off-%d", i), int64(100+i)*ms)
		assert.False(t, held)
		assert.Empty(t, evicted)
	}
	assert.Zero(t, tr.Evictions())
}

// A key that was busy long ago and silent since gives way to one that is busy now: decay, not history.
func TestStaleKeysFade(t *testing.T) {
	tr := New(1, time.Minute)
	for range 1000 {
		tr.Observe("yesterday", 0)
	}
	at := int64(2 * time.Hour) // 120 half-lives later
	held := false
	for i := 0; i < 5 && !held; i++ {
		held, _ = tr.Observe("today", at+int64(i)*ms)
	}
	assert.True(t, held)
	assert.False(t, tr.Holds("yesterday"))
}

// Two equally busy keys for one slot: the holder keeps it (one event of hysteresis), no flapping.
func TestEqualKeysDoNotSwap(t *testing.T) {
	tr := New(1, time.Hour)
	swaps := 0
	for i := range 1000 {
		at := int64(i) * ms
		if _, ev := tr.Observe("a", at); ev != "" {
			swaps++
		}
		if _, ev := tr.Observe("b", at); ev != "" {
			swaps++
		}
	}
	assert.LessOrEqual(t, swaps, 1)
}

// Memory stays bounded by twice the capacity whatever the number of distinct keys, and weights stay finite
// after years of process time.
func TestBoundedAndFinite(t *testing.T) {
	tr := New(50, time.Second)
	year := int64(365 * 24 * time.Hour)
	for i := range 200_000 {
		tr.Observe(fmt.Sprintf("k%d", i%5000), int64(i)*(year/200_000))
	}
	assert.LessOrEqual(t, len(tr.held.index)+len(tr.waiting.index), 100)
	for _, e := range tr.held.entries {
		assert.False(t, e.score != e.score || e.score > 1e300, "score %v", e.score)
	}
}

func BenchmarkObserveUniqueKeys(b *testing.B) {
	tr := New(1000, time.Hour)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("tenant-%d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tr.Observe(keys[i%len(keys)], int64(i)*ms)
	}
}
