package llmrootcauseconnector

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/schema"
)

func TestIntervalSetIsAUnion(t *testing.T) {
	var s intervalSet
	s = s.add(interval{10, 20})
	s = s.add(interval{12, 15}) // nested: nothing more
	s = s.add(interval{20, 30}) // touching: one interval
	s = s.add(interval{40, 50})
	s = s.add(interval{5, 8})
	assert.Equal(t, intervalSet{{5, 8}, {10, 30}, {40, 50}}, s)
	assert.InDelta(t, 33e-9, s.seconds(), 1e-15)
	assert.Equal(t, intervalSet{{5, 8}, {10, 25}, {45, 50}}, s.minus(intervalSet{{25, 45}}))
	assert.Equal(t, intervalSet{{5, 8}, {40, 50}}, s.union(intervalSet{{9, 12}}).minus(intervalSet{{9, 30}}))
	assert.Equal(t, intervalSet{{5, 8}, {10, 30}, {40, 50}}, s.add(interval{7, 6}), "an interval that ends before it starts adds nothing")
}

func TestIntervalSetIsBounded(t *testing.T) {
	var s intervalSet
	for i := range int64(1000) {
		s = s.add(interval{i * 10, i*10 + 5 + i%3}) // gaps of 3 to 5 ns
	}
	assert.LessOrEqual(t, len(s), maxIntervals)
	assert.Equal(t, int64(0), s[0].from)
	assert.Equal(t, int64(9995+999%3), s[len(s)-1].to, "the closest intervals merge; the ends stay")
}

func TestTreeIndexIsBounded(t *testing.T) {
	ix := newTreeIndex(100)
	slice := func(tid pcommon.TraceID, parent pcommon.SpanID) ptrace.Span {
		s := ptrace.NewSpan()
		s.SetTraceID(tid)
		s.SetParentSpanID(parent)
		s.SetStartTimestamp(1)
		s.SetEndTimestamp(2)
		return s
	}
	for i := range 10000 {
		tid := pcommon.TraceID{byte(i), byte(i >> 8)}
		for j := range 40 { // more parents than a trace holds on average
			ix.addSlice(slice(tid, pcommon.SpanID{byte(j) + 1}), phaseQueue)
		}
		ix.addPart(tid, pcommon.SpanID{0xff}, treePart{role: "prefill"})
	}
	assert.LessOrEqual(t, len(ix.trees), 100)
	assert.LessOrEqual(t, ix.entries, ix.maxEntries)
	n := 0
	for _, tr := range ix.trees {
		n += len(tr.groups) + len(tr.parts)
	}
	assert.Equal(t, n, ix.entries, "the count is what the trees hold")
	assert.LessOrEqual(t, len(ix.order), 2*ix.maxTraces+1)
}

// The request-span patterns' answers are remembered per span name, at most maxRememberedNames of them;
// names past the bound are still matched, by the patterns.
func TestRequestNamesRememberedAreBounded(t *testing.T) {
	sch, err := schema.Default()
	require.NoError(t, err)
	shape := newTreeShape(sch)
	for i := range 2 * maxRememberedNames {
		assert.Equal(t, -1, shape.matchName(fmt.Sprintf("GET /users/%d", i)).spec)
	}
	assert.LessOrEqual(t, len(shape.names), maxRememberedNames, "the names remembered stay within their bound")
	for range 2 { // once by the patterns, once more the same way: the memo is full
		m := shape.matchName("prefill Req 1a2b")
		assert.GreaterOrEqual(t, m.spec, 0)
		assert.Equal(t, "prefill", m.role)
	}
	fresh := newTreeShape(sch)
	for range 2 { // once by the patterns, once from memory
		m := fresh.matchName("Req 7")
		assert.GreaterOrEqual(t, m.spec, 0)
		assert.Empty(t, m.role)
	}
	assert.Len(t, fresh.names, 1)
}
