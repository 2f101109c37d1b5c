package llmrootcauseconnector

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// who is what a span says about the request's origin.
type who struct{ tenant, family string }

// namedBy is who a span said, remembered by request id with the span that said it, for a span link. The
// cache by span keeps who alone: its key is the span. Entries kept small matter here: the two caches take
// a write for every gateway span, at 65,536 entries each, and live mostly outside the processor's caches.
type namedBy struct {
	who
	traceID pcommon.TraceID
	spanID  pcommon.SpanID
}

type spanKey struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

// lookup finds the first of keys in span attributes, then in the resource.
func lookup(keys []string, attrs, res pcommon.Map) string {
	for _, m := range []pcommon.Map{attrs, res} {
		for _, k := range keys {
			if v, ok := m.Get(k); ok && v.AsString() != "" {
				return v.AsString()
			}
		}
	}
	return ""
}

// admitted is one request's stay in the running batch, remembered per replica to judge tenant contention.
type admitted struct {
	from, to int64 // unix ns: scheduled, finished
	tenant   string
	traceID  pcommon.TraceID
	spanID   pcommon.SpanID
}

// workLog is a replica's most recent admitted requests, at most workLogSize.
type workLog struct {
	entries []admitted
	// stays holds each entry's from and to again, packed: contention scans the whole log for every slow
	// request that queued, and most entries did not overlap its wait; 16 bytes an entry to read, not 72.
	stays []stay
	next  int
	// newest is the latest end among the requests logged: how far the log can see.
	newest int64
}

const workLogSize = 1024

// maxUnseenWeight bounds how much one logged request can stand for others like it still running (see
// contention): a few long requests must not outvote the batch.
const maxUnseenWeight = 8

// stay is an admitted request's time in the batch: unix ns, scheduled and finished.
type stay struct{ from, to int64 }

func (w *workLog) add(a admitted) {
	w.newest = max(w.newest, a.to)
	if len(w.entries) < workLogSize {
		w.entries = append(w.entries, a)
		w.stays = append(w.stays, stay{a.from, a.to})
		return
	}
	w.entries[w.next] = a
	w.stays[w.next] = stay{a.from, a.to}
	w.next = (w.next + 1) % workLogSize
}

// contention returns the tenant other than self that held the largest share of the running batch during
// [from, to], that share, and how many other requests ran then. A tenant's share is the time its requests
// spent in the batch within the interval over the time all requests did: how many of the batch's places
// it held while this request waited, on average. Places, not tokens: the scheduler admits requests into
// places, and a tenant that holds most of them is what the others queue behind; tokens would make one
// long prompt that came and went look like a tenant that held the batch.
//
// A request is logged when its span ends, so of the requests that ran during the interval the log holds
// those that have ended by now, and misses more of the long ones: a tenant of short requests would look
// as if it held the batch. Each logged request therefore also stands for those of its length still
// running: of the requests of duration d that overlap [from, to] (starting anywhere in [from-d, to]), the
// share that have ended by w.newest is (w.newest-from)/(to-from+d), and its time counts by the inverse,
// at most maxUnseenWeight times.
func (w *workLog) contention(self string, from, to int64, skip pcommon.SpanID) (string, float64, int) {
	// A few tenants share a replica at any moment: a slice beats a map here.
	type share struct {
		tenant string
		held   float64 // ns in the batch within [from, to], weighted for the unseen
	}
	var room [16]share // on the stack unless more tenants than that ran
	byTenant := room[:0]
	total, n := 0.0, 0
	for i, st := range w.stays {
		if st.from >= to || st.to <= from {
			continue
		}
		e := &w.entries[i]
		if e.spanID == skip {
			continue
		}
		held := float64(min(e.to, to) - max(e.from, from))
		if seen := float64(w.newest-from) / float64(to-from+e.to-e.from); seen < 1 {
			held /= max(seen, 1.0/maxUnseenWeight)
		}
		found := false
		for i := range byTenant {
			if byTenant[i].tenant == e.tenant {
				byTenant[i].held += held
				found = true
				break
			}
		}
		if !found {
			byTenant = append(byTenant, share{e.tenant, held})
		}
		total += held
		n++
	}
	top, topShare := "", 0.0
	for _, s := range byTenant {
		if s.tenant == self || total <= 0 {
			continue
		}
		if sh := s.held / total; sh > topShare || (sh == topShare && s.tenant < top) {
			top, topShare = s.tenant, sh
		}
	}
	return top, topShare, n
}
