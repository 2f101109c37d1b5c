package llmrootcauseconnector

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func secondsNS(s float64) int64 { return int64(s * 1e9) }

func logOf(entries ...admitted) *workLog {
	w := &workLog{}
	for i, e := range entries {
		e.spanID = pcommon.SpanID{byte(i + 1)}
		w.add(e)
	}
	return w
}

// The share of the batch is of its places over time, not of tokens or of requests counted once.
func TestContentionIsTheBatchPlacesHeld(t *testing.T) {
	// The request waits from 10 to 12 s. "bulk" holds one place for the whole wait; "chat" has two shorter
	// requests in it (1 s and 0.5 s); "self" a place for all of it, which counts in the batch but is never
	// the other.
	w := logOf(
		admitted{from: secondsNS(9), to: secondsNS(12.5), tenant: "bulk"},
		admitted{from: secondsNS(9.5), to: secondsNS(11), tenant: "chat"},
		admitted{from: secondsNS(11), to: secondsNS(11.5), tenant: "chat"},
		admitted{from: secondsNS(9), to: secondsNS(12.5), tenant: "self"},
		admitted{from: secondsNS(13), to: secondsNS(20), tenant: "later"}, // after the wait: not in it
	)
	// Every request ended by 20 s, the newest end: none stands for others still running.
	top, share, others := w.contention("self", secondsNS(10), secondsNS(12), pcommon.SpanID{})
	assert.Equal(t, "bulk", top)
	assert.InDelta(t, 2/5.5, share, 1e-9) // bulk 2 of 5.5 place-seconds (bulk 2, chat 1+0.5, self 2)
	assert.Equal(t, 4, others)
}

// A request is logged when it ends, so while a tenant's long requests still run only its short ones are
// in the log. Each ended request stands for those like it not yet ended: a tenant of many short requests
// does not look as if it held a batch that a long-running tenant filled.
func TestContentionCountsTheLongRequestsStillRunning(t *testing.T) {
	// A report request waits from 10 to 12 s; the newest end logged is 12.5 s. Three short chat requests
	// fill the wait (2, 1.5 and 1 s of it), and one long report request of 20 s overlaps all of it.
	w := logOf(
		admitted{from: secondsNS(10), to: secondsNS(12), tenant: "chat"},
		admitted{from: secondsNS(10.5), to: secondsNS(12), tenant: "chat"},
		admitted{from: secondsNS(11), to: secondsNS(12.5), tenant: "chat"},
		admitted{from: secondsNS(-7.5), to: secondsNS(12.5), tenant: "report"},
	)
	top, share, _ := w.contention("report", secondsNS(10), secondsNS(12), pcommon.SpanID{})
	// Of the requests of 2 s that overlap the wait (starting from 8 to 12 s), those ended by 12.5 s are
	// 2.5/4 of them; of 1.5 s, 2.5/3.5; of 20 s, 2.5/22, so that one counts the bound, 8 times. Chat:
	// 2/0.625 + 1.5/(2.5/3.5) + 1/(2.5/3.5) = 6.7; report: 2*8 = 16.
	assert.Equal(t, "chat", top)
	assert.InDelta(t, 6.7/22.7, share, 1e-9)
	// Each counted once, chat would hold 4.5 of 6.5 place-seconds: above the 60% that makes it contention.
	assert.Less(t, share, NewFactory().CreateDefaultConfig().(*Config).Rules.TenantShare)
}

// The log keeps the latest workLogSize requests: one written over is gone, its time in the batch with it.
func TestContentionForgetsRequestsWrittenOver(t *testing.T) {
	w := &workLog{}
	for i := range workLogSize {
		w.add(admitted{from: secondsNS(10), to: secondsNS(12), tenant: "bulk", spanID: pcommon.SpanID{1, byte(i), byte(i >> 8)}})
	}
	top, _, n := w.contention("self", secondsNS(10), secondsNS(12), pcommon.SpanID{})
	assert.Equal(t, "bulk", top)
	assert.Equal(t, workLogSize, n)
	// As many later requests, all of them after the wait: nothing of the log ran during it any more.
	for i := range workLogSize {
		w.add(admitted{from: secondsNS(20), to: secondsNS(21), tenant: "chat", spanID: pcommon.SpanID{2, byte(i), byte(i >> 8)}})
	}
	top, _, n = w.contention("self", secondsNS(10), secondsNS(12), pcommon.SpanID{})
	assert.Empty(t, top)
	assert.Zero(t, n)
}
