package llmrootcauseconnector

import (
	"context"
	"math"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadata"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// extremeValues are what a hostile or broken client puts where a number belongs: numeric extremes and
// type swaps.
var extremeValues = []func(pcommon.Value){
	func(v pcommon.Value) { v.SetDouble(math.NaN()) },
	func(v pcommon.Value) { v.SetDouble(math.Inf(1)) },
	func(v pcommon.Value) { v.SetDouble(math.Inf(-1)) },
	func(v pcommon.Value) { v.SetDouble(1e308) },
	func(v pcommon.Value) { v.SetDouble(-1e308) },
	func(v pcommon.Value) { v.SetDouble(math.SmallestNonzeroFloat64) },
	func(v pcommon.Value) { v.SetDouble(-1) },
	func(v pcommon.Value) { v.SetDouble(0) },
	func(v pcommon.Value) { v.SetDouble(0.25) },
	func(v pcommon.Value) { v.SetInt(math.MaxInt64) },
	func(v pcommon.Value) { v.SetInt(math.MinInt64) },
	func(v pcommon.Value) { v.SetInt(0) },
	func(v pcommon.Value) { v.SetInt(512) },
	func(v pcommon.Value) { v.SetStr("12") },
	func(v pcommon.Value) { v.SetStr(strings.Repeat("x", 70_000)) },
	func(v pcommon.Value) { v.SetBool(true) },
	func(v pcommon.Value) { v.SetEmptyMap().PutStr("nested", "map") },
}

// readAttributes are every span attribute the connector reads.
var readAttributes = []string{
	schema.AttrGenAILatencyTimeInQueue, schema.AttrGenAILatencyTimeInModelPrefill, schema.AttrGenAILatencyTimeInModelDecode,
	schema.AttrGenAILatencyTimeInModelInference, schema.AttrGenAILatencyTimeToFirstToken, schema.AttrGenAILatencyE2e,
	schema.AttrGenAIUsagePromptTokens, schema.AttrGenAIUsageCompletionTokens, schema.AttrGenAIUsageCachedTokens,
	schema.AttrGenAIRequestID, schema.AttrGenAIRequestModel, schema.AttrGenAIResponseModel, schema.AttrLLMTenant,
	schema.AttrLLMPromptFamily, "tenant.id",
}

// FuzzExtremeAttributes sets every attribute the connector reads, on the request span and on the state it
// is joined with, to numeric extremes and type swaps chosen by the input. The connector never reaches an
// internal error (the guard would hide it from a plain panic check, so the test fails on its log line), every
// span goes on, and a normal request after it is still explained.
func FuzzExtremeAttributes(f *testing.F) {
	f.Add([]byte{9, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{12, 12, 12, 12, 12, 12, 12, 12, 12, 255, 0, 255})
	f.Fuzz(func(t *testing.T, choice []byte) {
		logs, observed := observer.New(zap.ErrorLevel)
		set := connectortest.NewNopSettings(metadata.Type)
		set.Logger = zap.New(logs)
		cfg := createDefaultConfig()
		cfg.MaxWait = 0
		sink := &consumertest.TracesSink{}
		fac := NewFactory()
		spansIn, err := fac.CreateTracesToTraces(context.Background(), set, cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		stateIn, err := fac.CreateMetricsToMetrics(context.Background(), set, cfg, consumertest.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		_ = spansIn.Start(context.Background(), componenttest.NewNopHost())
		_ = stateIn.Start(context.Background(), componenttest.NewNopHost())
		defer func() { _ = spansIn.Shutdown(context.Background()); _ = stateIn.Shutdown(context.Background()) }()
		pick := func(i int) int {
			if len(choice) == 0 {
				return 0
			}
			return int(choice[i%len(choice)])
		}
		// State with extremes too: every canonical value the summaries read.
		for step := range 3 {
			values := steady(float64(step * 10))
			for k := range values {
				switch pick(step+len(k)) % 5 {
				case 0:
					values[k] = math.NaN()
				case 1:
					values[k] = math.Inf(1)
				case 2:
					values[k] = -1e308
				case 3:
					values[k] = 1e308
				}
			}
			_ = stateIn.ConsumeMetrics(context.Background(), fleetstatetest.Engine("r1", testModel, float64(step*10), values))
		}
		td := batchOf(with(normal(), func(c *call) { c.replica, c.tenant, c.family, c.id = "r1", "acme", "bot", "hostile" }))
		forEachSpan(td, func(_ pcommon.Map, s ptrace.Span) {
			if s.Name() != "llm_request" {
				return
			}
			for i, key := range readAttributes {
				if c := pick(i); c%(len(extremeValues)+1) < len(extremeValues) {
					extremeValues[c%(len(extremeValues)+1)](s.Attributes().PutEmpty(key))
				}
			}
			if c := pick(len(readAttributes)); c%3 == 0 {
				s.SetStartTimestamp(pcommon.Timestamp(math.MaxUint64 - uint64(c)))
			}
		})
		td.ResourceSpans().At(0).Resource().Attributes().PutStr(schema.AttrServiceInstanceID, strings.Repeat("r", pick(1)*300))
		want := td.SpanCount()
		if err := spansIn.ConsumeTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
		if err := spansIn.ConsumeTraces(context.Background(), batchOf(with(normal(), func(c *call) { c.replica, c.id, c.start = "r1", "after", 25 }))); err != nil {
			t.Fatal(err)
		}
		if got := sink.SpanCount(); got != want+1 {
			t.Fatalf("%d spans went on, want %d", got, want+1)
		}
		if observed.Len() > 0 {
			t.Fatalf("internal error: %v", observed.All()[0].ContextMap())
		}
		last := sink.AllTraces()[len(sink.AllTraces())-1]
		forEachSpan(last, func(_ pcommon.Map, s ptrace.Span) {
			if _, ok := s.Attributes().Get(schema.AttrLLMRootCause); !ok {
				t.Fatalf("the request after the hostile one was not explained")
			}
		})
	})
}
