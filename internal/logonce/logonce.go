// Package logonce remembers which problems a component has already logged, so that a problem that recurs on
// every scrape or every batch costs one line instead of one per occurrence. The keys often come from the
// data (an error's text, a GPU and its XID code, a family name), so what is remembered is bounded: past the
// bound everything is forgotten and said again once, which costs a few lines; remembering every key of a
// stream of distinct ones would cost memory without end.
package logonce

import (
	"sync"
	"time"
)

// DefaultLimit is how many keys a Set or a Throttle remembers unless told otherwise.
const DefaultLimit = 1000

// Set is the keys already said. The zero value is ready to use and remembers DefaultLimit keys. Safe for
// concurrent use.
type Set struct {
	mu    sync.Mutex
	said  map[string]struct{}
	limit int
}

// New returns a set that remembers at most limit keys (DefaultLimit when limit < 1).
func New(limit int) *Set { return &Set{limit: limit} }

// First reports whether key is said for the first time (or the first time since the set last forgot):
// the caller logs when it returns true. When the set is full it forgets every key before taking this one.
func (s *Set) First(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.said[key]; ok {
		return false
	}
	if s.said == nil {
		s.said = map[string]struct{}{}
	}
	if len(s.said) >= limitOr(s.limit) {
		clear(s.said)
	}
	s.said[key] = struct{}{}
	return true
}

// Said reports whether key has been said and not forgotten since: a way to skip the work of finding out
// whether there is something to say.
func (s *Set) Said(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.said[key]
	return ok
}

// Len is how many keys the set remembers.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.said)
}

func limitOr(limit int) int {
	if limit < 1 {
		return DefaultLimit
	}
	return limit
}

// Throttle says each key the first time it occurs and after that at most once per interval, counting the
// occurrences that went unsaid in between so the next line can tell how many there were. For events worth
// a line each (a counter reset is how an engine restart shows) that can come in a flood (a counter that
// flaps resets on every other scrape). Safe for concurrent use.
type Throttle struct {
	mu       sync.Mutex
	interval time.Duration
	limit    int
	keys     map[string]*throttled
}

type throttled struct {
	lastSaid time.Time
	unsaid   int
}

// NewThrottle returns a throttle that says each key at most once per interval and remembers at most limit
// keys (DefaultLimit when limit < 1); past the limit it forgets them all, and a forgotten key is said the
// next time it occurs.
func NewThrottle(interval time.Duration, limit int) *Throttle {
	return &Throttle{interval: interval, limit: limit, keys: map[string]*throttled{}}
}

// Note records an occurrence of key at now. due tells the caller to say it now: the key is new, or was last
// said at least an interval ago. unsaid counts the occurrences since the key was last said that were not
// said: when due, those before this one (for the line to report); otherwise, including this one.
func (t *Throttle) Note(key string, now time.Time) (due bool, unsaid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.keys[key]
	if k == nil {
		if len(t.keys) >= limitOr(t.limit) {
			clear(t.keys)
		}
		k = &throttled{}
		t.keys[key] = k
	}
	if k.lastSaid.IsZero() || now.Sub(k.lastSaid) >= t.interval {
		unsaid = k.unsaid
		k.lastSaid, k.unsaid = now, 0
		return true, unsaid
	}
	k.unsaid++
	return false, k.unsaid
}

// Len is how many keys the throttle remembers.
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}
