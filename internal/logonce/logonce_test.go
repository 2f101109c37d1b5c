package logonce

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSetSaysEachKeyOnce(t *testing.T) {
	var s Set // the zero value works
	assert.False(t, s.Said("a"))
	assert.True(t, s.First("a"))
	assert.False(t, s.First("a"))
	assert.False(t, s.First("a"))
	assert.True(t, s.Said("a"))
	assert.True(t, s.First("b"), "another key is said on its own")
	assert.False(t, s.First("b"))
	assert.True(t, s.First(""), "the empty key is a key like any other")
	assert.False(t, s.First(""))
	assert.Equal(t, 3, s.Len())
}

func TestSetBound(t *testing.T) {
	s := New(3)
	for _, k := range []string{"a", "b", "c"} {
		assert.True(t, s.First(k))
	}
	assert.Equal(t, 3, s.Len())
	assert.False(t, s.First("a"), "a full set still knows its keys")
	// A fourth key makes room by forgetting: a, b and c are said again once each.
	assert.True(t, s.First("d"))
	assert.Equal(t, 1, s.Len())
	assert.True(t, s.First("a"))
	assert.False(t, s.First("a"))

	// A hostile stream of distinct keys: each is new, so each is said, but memory stays within the limit.
	h := New(100)
	for i := range 100_000 {
		assert.True(t, h.First(strconv.Itoa(i)))
		if h.Len() > 100 {
			t.Fatalf("the set holds %d keys after %d distinct ones, over its limit of 100", h.Len(), i+1)
		}
	}
}

func TestSetDefaultLimit(t *testing.T) {
	for _, s := range []*Set{{}, New(0), New(-1)} {
		for i := range DefaultLimit {
			s.First(strconv.Itoa(i))
		}
		assert.Equal(t, DefaultLimit, s.Len())
		assert.False(t, s.First("0"))
		s.First("one more")
		assert.Equal(t, 1, s.Len())
	}
}

// Many goroutines say the same keys: each key is said exactly once (run under -race).
func TestSetConcurrentCallersSayEachKeyOnce(t *testing.T) {
	s := New(0)
	const keys, callers = 50, 16
	var said [keys]atomic.Int32
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for i := range keys {
				if s.First(strconv.Itoa(i)) {
					said[i].Add(1)
				}
				s.Said(strconv.Itoa(i))
			}
		})
	}
	wg.Wait()
	for i := range keys {
		assert.EqualValues(t, 1, said[i].Load(), "key %d", i)
	}
}

func TestThrottle(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := NewThrottle(time.Hour, 0)
	due, unsaid := th.Note("a", start)
	assert.True(t, due, "the first occurrence is said")
	assert.Zero(t, unsaid)

	for i := 1; i <= 3; i++ {
		due, unsaid = th.Note("a", start.Add(time.Duration(i)*time.Minute))
		assert.False(t, due, "within the interval")
		assert.Equal(t, i, unsaid, "unsaid counts this occurrence")
	}
	due, _ = th.Note("b", start.Add(5*time.Minute))
	assert.True(t, due, "keys are throttled apart")

	due, unsaid = th.Note("a", start.Add(time.Hour))
	assert.True(t, due, "an interval after the last line")
	assert.Equal(t, 3, unsaid, "the line reports the occurrences it did not say")
	due, unsaid = th.Note("a", start.Add(time.Hour+time.Second))
	assert.False(t, due)
	assert.Equal(t, 1, unsaid, "the count starts over after each line")
}

func TestThrottleBound(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := NewThrottle(time.Hour, 10)
	for i := range 10_000 {
		due, _ := th.Note(strconv.Itoa(i), now)
		assert.True(t, due)
		if th.Len() > 10 {
			t.Fatalf("the throttle holds %d keys, over its limit of 10", th.Len())
		}
	}
	// A forgotten key is said again.
	due, _ := th.Note("0", now)
	assert.True(t, due)
}

func TestThrottleConcurrent(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := NewThrottle(time.Hour, 0)
	var said, unsaid atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 100 {
				if due, _ := th.Note("k", now); due {
					said.Add(1)
				} else {
					unsaid.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, said.Load())
	assert.EqualValues(t, 1599, unsaid.Load())
	_, n := th.Note("k", now)
	assert.Equal(t, 1600, n, "no occurrence is lost between goroutines")
}
