// Package golden compares what a component emits with an expected output kept as YAML under the component's
// testdata/, so that a stray metric, attribute, unit, scope or value fails a test that never named it.
// Reading and writing use contrib's pkg/golden; comparing uses contrib's pdatatest (pmetrictest, ptracetest,
// plogtest), whose options say what a test may ignore.
//
// Run a package's tests with -update to rewrite its expected files from what the code emits now; then read
// the diff, because an updated file is a claim that the new output is right.
//
// pdatatest's comparisons leave some fields out (a log record's event name, a span's flags, scope
// attributes, among others). Where a test passes no option, the output must also equal the file field for
// field: both are written as OTLP JSON, attribute lists put in key order (their order carries no meaning),
// and compared whole.
//
// Unlike contrib's WriteMetrics, nothing is sorted or renumbered when a file is written: the file holds the
// output in the order and with the timestamps the component gave, and the comparison is exact unless an
// option says otherwise. A test whose output carries wall-clock times replaces them first (FixClock), so
// that the times derived from the input are still compared.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	contribgolden "github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/plogtest"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var update = flag.Bool("update", false, "rewrite the expected golden files under testdata/ from what the code emits now")

// Updating reports whether this run rewrites the expected files (-update).
func Updating() bool { return *update }

// Metrics fails the test unless actual equals the metrics in the YAML file at path, under opts. With -update
// it writes actual to path first.
func Metrics(tb testing.TB, path string, actual pmetric.Metrics, opts ...pmetrictest.CompareMetricsOption) {
	tb.Helper()
	if *update {
		body, err := contribgolden.MarshalMetricsYAML(actual)
		if err != nil {
			tb.Fatalf("golden %s: %v", path, err)
		}
		write(tb, path, body)
	}
	expected, err := contribgolden.ReadMetrics(path)
	if err != nil {
		tb.Fatalf("golden %s: %v (run the test with -update to write it)", path, err)
	}
	if err := pmetrictest.CompareMetrics(expected, actual, opts...); err != nil {
		tb.Fatalf("output differs from %s: %v\n(if the change is intended, rerun with -update and review the diff)", path, err)
	}
	if len(opts) == 0 {
		marshaler := &pmetric.JSONMarshaler{}
		exact(tb, path, func() ([]byte, error) { return marshaler.MarshalMetrics(expected) },
			func() ([]byte, error) { return marshaler.MarshalMetrics(actual) })
	}
}

// Traces fails the test unless actual equals the traces in the YAML file at path, under opts. With -update
// it writes actual to path first.
func Traces(tb testing.TB, path string, actual ptrace.Traces, opts ...ptracetest.CompareTracesOption) {
	tb.Helper()
	if *update {
		mkdir(tb, path)
		if err := contribgolden.WriteTracesToFile(path, actual); err != nil {
			tb.Fatalf("golden %s: %v", path, err)
		}
		tb.Logf("wrote %s", path)
	}
	expected, err := contribgolden.ReadTraces(path)
	if err != nil {
		tb.Fatalf("golden %s: %v (run the test with -update to write it)", path, err)
	}
	if err := ptracetest.CompareTraces(expected, actual, opts...); err != nil {
		tb.Fatalf("output differs from %s: %v\n(if the change is intended, rerun with -update and review the diff)", path, err)
	}
	if len(opts) == 0 {
		marshaler := &ptrace.JSONMarshaler{}
		exact(tb, path, func() ([]byte, error) { return marshaler.MarshalTraces(expected) },
			func() ([]byte, error) { return marshaler.MarshalTraces(actual) })
	}
}

// Logs fails the test unless actual equals the logs in the YAML file at path, under opts. With -update it
// writes actual to path first.
func Logs(tb testing.TB, path string, actual plog.Logs, opts ...plogtest.CompareLogsOption) {
	tb.Helper()
	if *update {
		mkdir(tb, path)
		if err := contribgolden.WriteLogsToFile(path, actual); err != nil {
			tb.Fatalf("golden %s: %v", path, err)
		}
		tb.Logf("wrote %s", path)
	}
	expected, err := contribgolden.ReadLogs(path)
	if err != nil {
		tb.Fatalf("golden %s: %v (run the test with -update to write it)", path, err)
	}
	if err := plogtest.CompareLogs(expected, actual, opts...); err != nil {
		tb.Fatalf("output differs from %s: %v\n(if the change is intended, rerun with -update and review the diff)", path, err)
	}
	if len(opts) == 0 {
		marshaler := &plog.JSONMarshaler{}
		exact(tb, path, func() ([]byte, error) { return marshaler.MarshalLogs(expected) },
			func() ([]byte, error) { return marshaler.MarshalLogs(actual) })
	}
}

// ReadMetrics reads an input kept as YAML (a scenario's input.yaml), failing the test if it cannot.
func ReadMetrics(tb testing.TB, path string) pmetric.Metrics {
	tb.Helper()
	md, err := contribgolden.ReadMetrics(path)
	if err != nil {
		tb.Fatalf("reading %s: %v", path, err)
	}
	return md
}

// ReadTraces reads an input kept as YAML, failing the test if it cannot.
func ReadTraces(tb testing.TB, path string) ptrace.Traces {
	tb.Helper()
	td, err := contribgolden.ReadTraces(path)
	if err != nil {
		tb.Fatalf("reading %s: %v", path, err)
	}
	return td
}

func write(tb testing.TB, path string, body []byte) {
	tb.Helper()
	mkdir(tb, path)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		tb.Fatalf("golden %s: %v", path, err)
	}
	tb.Logf("wrote %s", path)
}

func mkdir(tb testing.TB, path string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatalf("golden %s: %v", path, err)
	}
}

// JoinMetrics puts the batches a component emitted one after the other into one, in the order they went
// out, so that a whole run is compared with one file.
func JoinMetrics(batches []pmetric.Metrics) pmetric.Metrics {
	out := pmetric.NewMetrics()
	for _, b := range batches {
		b.ResourceMetrics().MoveAndAppendTo(out.ResourceMetrics())
	}
	return out
}

// JoinTraces is JoinMetrics for spans.
func JoinTraces(batches []ptrace.Traces) ptrace.Traces {
	out := ptrace.NewTraces()
	for _, b := range batches {
		b.ResourceSpans().MoveAndAppendTo(out.ResourceSpans())
	}
	return out
}

// JoinLogs is JoinMetrics for log records.
func JoinLogs(batches []plog.Logs) plog.Logs {
	out := plog.NewLogs()
	for _, b := range batches {
		b.ResourceLogs().MoveAndAppendTo(out.ResourceLogs())
	}
	return out
}
