package fleetstate

// ring holds the newest snapshots in time order, at most cap of them.
type ring[T any] struct {
	buf   []T
	start int // index of the oldest
	n     int
}

func newRing[T any](capacity int) ring[T] { return ring[T]{buf: make([]T, capacity)} }

func (r *ring[T]) at(i int) T { return r.buf[(r.start+i)%len(r.buf)] }

// push appends v and drops what is older than cutoff. A snapshot older than the newest one held (a late
// batch) replaces nothing and is dropped: summaries assume time order.
func (r *ring[T]) push(v T, timeOf func(T) int64, cutoff int64) {
	r.pushDropping(v, timeOf, cutoff, nil)
}

// pushDropping is push that hands each snapshot it drops for age or room to dropped, with the snapshot that
// follows it (the next one held, or v), before it goes: what leaves the window can still be summed up.
func (r *ring[T]) pushDropping(v T, timeOf func(T) int64, cutoff int64, dropped func(old, next T)) {
	if r.n > 0 && timeOf(r.at(r.n-1)) >= timeOf(v) {
		if timeOf(r.at(r.n-1)) == timeOf(v) {
			r.buf[(r.start+r.n-1)%len(r.buf)] = v // the same scrape seen again (a retried batch)
		}
		return
	}
	if r.n == len(r.buf) {
		if dropped != nil {
			next := v
			if r.n > 1 {
				next = r.at(1)
			}
			dropped(r.at(0), next)
		}
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
	r.buf[(r.start+r.n)%len(r.buf)] = v
	r.n++
	for r.n > 1 && timeOf(r.at(0)) < cutoff {
		if dropped != nil {
			dropped(r.at(0), r.at(1))
		}
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
}

// span returns the indexes [first, last] covering [from, to]: the newest snapshot at or before from (else
// the oldest one held) through the oldest one at or after to (else the newest). ok is false when empty.
func (r *ring[T]) span(timeOf func(T) int64, from, to int64) (first, last int, ok bool) {
	if r.n == 0 {
		return 0, 0, false
	}
	first = 0
	for i := r.n - 1; i >= 0; i-- {
		if timeOf(r.at(i)) <= from {
			first = i
			break
		}
	}
	last = r.n - 1
	for i := first; i < r.n; i++ {
		if timeOf(r.at(i)) >= to {
			last = i
			break
		}
	}
	return first, last, true
}

// insert places v in time order, keeping snapshots of equal time (sources that report at the same moment);
// a full ring drops its oldest first, and what is older than cutoff goes.
func (r *ring[T]) insert(v T, timeOf func(T) int64, cutoff int64) {
	if r.n == len(r.buf) {
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
	*r.ptr(r.n) = v
	r.n++
	for i := r.n - 1; i > 0 && timeOf(r.at(i-1)) > timeOf(r.at(i)); i-- {
		*r.ptr(i - 1), *r.ptr(i) = r.at(i), r.at(i-1)
	}
	for r.n > 1 && timeOf(r.at(0)) < cutoff {
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
}

// ptr is the i-th oldest snapshot held, for updating in place.
func (r *ring[T]) ptr(i int) *T { return &r.buf[(r.start+i)%len(r.buf)] }
