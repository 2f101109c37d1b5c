package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/plogtest"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// failures is a testing.TB that records Fatalf instead of failing the real test; like the real one, it
// stops the goroutine that called it.
type failures struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (f *failures) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *failures) Logf(string, ...any) {}

// check runs fn against a recorder and returns what it failed with.
func check(t *testing.T, fn func(tb testing.TB)) []string {
	rec := &failures{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(rec)
	}()
	<-done
	return rec.msgs
}

func withUpdate(t *testing.T, on bool) {
	old := *update
	*update = on
	t.Cleanup(func() { *update = old })
}

func sampleMetrics(value float64, unit string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.instance.id", "replica-1")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("example/scope")
	m := sm.Metrics().AppendEmpty()
	m.SetName("llm.engine.queue.depth")
	m.SetUnit(unit)
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(1_700_000_000_000_000_000)
	dp.SetDoubleValue(value)
	dp.Attributes().PutStr("gen_ai.request.model", "m")
	c := sm.Metrics().AppendEmpty()
	c.SetName("llm.requests")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	cp := sum.DataPoints().AppendEmpty()
	cp.SetStartTimestamp(1_600_000_000_000_000_000)
	cp.SetTimestamp(1_700_000_000_000_000_000)
	cp.SetIntValue(42)
	return md
}

func TestMetricsRoundTripAndDetectChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "case", "expected.yaml")

	withUpdate(t, false)
	if msgs := check(t, func(tb testing.TB) { Metrics(tb, path, sampleMetrics(3, "{request}")) }); len(msgs) != 1 ||
		!strings.Contains(msgs[0], "-update") {
		t.Fatalf("a missing golden file must fail and say how to write it; got %q", msgs)
	}

	withUpdate(t, true)
	if msgs := check(t, func(tb testing.TB) { Metrics(tb, path, sampleMetrics(3, "{request}")) }); len(msgs) != 0 {
		t.Fatalf("-update must write and then pass: %q", msgs)
	}
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"llm.engine.queue.depth", "'{request}'", "replica-1", "example/scope", "\"42\""} {
		if !strings.Contains(string(body), want) {
			t.Errorf("written YAML lacks %s:\n%s", want, body)
		}
	}

	withUpdate(t, false)
	if msgs := check(t, func(tb testing.TB) { Metrics(tb, path, sampleMetrics(3, "{request}")) }); len(msgs) != 0 {
		t.Fatalf("the same output must match what -update wrote: %q", msgs)
	}
	for name, changed := range map[string]pmetric.Metrics{
		"value": sampleMetrics(4, "{request}"),
		"unit":  sampleMetrics(3, "s"),
		"extra metric": func() pmetric.Metrics {
			md := sampleMetrics(3, "{request}")
			md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty().SetName("stray")
			return md
		}(),
		"attribute": func() pmetric.Metrics {
			md := sampleMetrics(3, "{request}")
			md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0).
				Attributes().PutStr("extra", "x")
			return md
		}(),
		"scope": func() pmetric.Metrics {
			md := sampleMetrics(3, "{request}")
			md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().SetName("other/scope")
			return md
		}(),
		"start time": func() pmetric.Metrics {
			md := sampleMetrics(3, "{request}")
			md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(1).Sum().DataPoints().At(0).SetStartTimestamp(1)
			return md
		}(),
	} {
		if msgs := check(t, func(tb testing.TB) { Metrics(tb, path, changed) }); len(msgs) != 1 ||
			!strings.Contains(msgs[0], "differs") {
			t.Errorf("a changed %s must fail the comparison; got %q", name, msgs)
		}
	}
	// An option says what may differ, and only that.
	if msgs := check(t, func(tb testing.TB) {
		Metrics(tb, path, sampleMetrics(4, "{request}"), pmetrictest.IgnoreMetricValues("llm.engine.queue.depth"))
	}); len(msgs) != 0 {
		t.Fatalf("an ignored value must not fail: %q", msgs)
	}
}

// The file keeps the output's own order and times: nothing is sorted or renumbered on the way to disk.
func TestMetricsAreWrittenAsEmitted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "expected.yaml")
	withUpdate(t, true)
	md := sampleMetrics(3, "1")
	if msgs := check(t, func(tb testing.TB) { Metrics(tb, path, md) }); len(msgs) != 0 {
		t.Fatal(msgs)
	}
	back := ReadMetrics(t, path)
	ms := back.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	if ms.At(0).Name() != "llm.engine.queue.depth" || ms.At(1).Name() != "llm.requests" {
		t.Fatalf("order changed: %s, %s", ms.At(0).Name(), ms.At(1).Name())
	}
	if got := ms.At(1).Sum().DataPoints().At(0).StartTimestamp(); got != 1_600_000_000_000_000_000 {
		t.Fatalf("start time rewritten to %d", got)
	}
}

func TestTracesAndLogsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	td := ptrace.NewTraces()
	s := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetName("llm_request")
	s.SetTraceID(pcommon.TraceID{1})
	s.SetSpanID(pcommon.SpanID{2})
	s.Attributes().PutStr("llm.root_cause", "queue_saturation")
	ld := plog.NewLogs()
	r := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	r.Body().SetStr("slow")
	r.SetObservedTimestamp(5)

	withUpdate(t, true)
	if msgs := check(t, func(tb testing.TB) {
		Traces(tb, filepath.Join(dir, "traces.yaml"), td)
		Logs(tb, filepath.Join(dir, "logs.yaml"), ld)
	}); len(msgs) != 0 {
		t.Fatal(msgs)
	}
	withUpdate(t, false)
	s.Attributes().PutStr("llm.root_cause", "kv_cache_pressure")
	if msgs := check(t, func(tb testing.TB) { Traces(tb, filepath.Join(dir, "traces.yaml"), td) }); len(msgs) != 1 {
		t.Errorf("a changed span attribute must fail: %q", msgs)
	}
	r.SetObservedTimestamp(6)
	if msgs := check(t, func(tb testing.TB) { Logs(tb, filepath.Join(dir, "logs.yaml"), ld) }); len(msgs) != 1 {
		t.Errorf("a changed observed time must fail: %q", msgs)
	}
	if msgs := check(t, func(tb testing.TB) {
		Logs(tb, filepath.Join(dir, "logs.yaml"), ld, plogtest.IgnoreObservedTimestamp())
	}); len(msgs) != 0 {
		t.Errorf("an ignored observed time must not fail: %q", msgs)
	}
}

func TestFixClockReplacesOnlyTheWallClock(t *testing.T) {
	md := sampleMetrics(3, "1")
	const wall = pcommon.Timestamp(1_700_000_000_000_000_000)
	if n := FixClock(md, wall, 7); n != 2 {
		t.Fatalf("replaced %d times, want the gauge's and the sum's timestamps", n)
	}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	if got := ms.At(0).Gauge().DataPoints().At(0).Timestamp(); got != 7 {
		t.Errorf("gauge timestamp %d", got)
	}
	if got := ms.At(1).Sum().DataPoints().At(0).StartTimestamp(); got != 1_600_000_000_000_000_000 {
		t.Errorf("a start time from the input was changed to %d", got)
	}
}

// pdatatest does not compare a log record's event name or a span's flags; without options, the file must
// still match field for field. Attribute order is not a difference.
func TestExactBeyondPdatatest(t *testing.T) {
	dir := t.TempDir()
	logs := func(event string) plog.Logs {
		ld := plog.NewLogs()
		r := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
		r.SetEventName(event)
		r.Attributes().PutStr("a", "1")
		r.Attributes().PutStr("b", "2")
		return ld
	}
	withUpdate(t, true)
	if msgs := check(t, func(tb testing.TB) { Logs(tb, filepath.Join(dir, "logs.yaml"), logs("llm.incident")) }); len(msgs) != 0 {
		t.Fatal(msgs)
	}
	withUpdate(t, false)
	if msgs := check(t, func(tb testing.TB) { Logs(tb, filepath.Join(dir, "logs.yaml"), logs("llm.other")) }); len(msgs) != 1 ||
		!strings.Contains(msgs[0], "eventName") {
		t.Errorf("a changed event name must fail and be named: %q", msgs)
	}
	reordered := plog.NewLogs()
	r := reordered.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	r.SetEventName("llm.incident")
	r.Attributes().PutStr("b", "2")
	r.Attributes().PutStr("a", "1")
	if msgs := check(t, func(tb testing.TB) { Logs(tb, filepath.Join(dir, "logs.yaml"), reordered) }); len(msgs) != 0 {
		t.Errorf("attribute order is no difference: %q", msgs)
	}

	td := ptrace.NewTraces()
	s := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetName("llm_request")
	withUpdate(t, true)
	if msgs := check(t, func(tb testing.TB) { Traces(tb, filepath.Join(dir, "traces.yaml"), td) }); len(msgs) != 0 {
		t.Fatal(msgs)
	}
	withUpdate(t, false)
	s.SetFlags(1)
	if msgs := check(t, func(tb testing.TB) { Traces(tb, filepath.Join(dir, "traces.yaml"), td) }); len(msgs) != 1 {
		t.Errorf("changed span flags must fail: %q", msgs)
	}
}
