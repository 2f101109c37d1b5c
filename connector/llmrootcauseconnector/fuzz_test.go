package llmrootcauseconnector

import (
	"context"
	"math"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadata"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// FuzzRequestSpan feeds engine spans with any latencies, token counts and timestamps (NaN, negative, huge,
// end before start): the connector never panics, every span goes on, and wherever it writes a breakdown the
// phases add up to e2e with nothing negative.
func FuzzRequestSpan(f *testing.F) {
	f.Add(0.01, 0.1, 1.98, 2.1, 0.115, int64(500), int64(100), int64(-1), int64(0), int64(2_100_000_000))
	f.Add(math.NaN(), -1.0, math.Inf(1), 0.0, -3.0, int64(-5), int64(0), int64(10), int64(5_000_000_000), int64(1))
	f.Add(3.4, 0.0, 0.0, 1.0, 9.0, int64(1<<40), int64(1), int64(1<<41), int64(-7), int64(0))
	// found by the fuzzer: a span ending before 1970 indexed the rolling baselines with a negative slice
	f.Add(0.5, 0.2, 1e308, 2.0, 0.7, int64(10), int64(3), int64(-1), int64(-1)<<62, int64(1))
	sink := &consumertest.TracesSink{}
	cfg := createDefaultConfig()
	cfg.MaxWait = 0
	cfg.SLO.Models = map[string]Limits{testModel: {TTFT: 1e9}}
	fac := NewFactory()
	set := connectortest.NewNopSettings(metadata.Type)
	spansIn, err := fac.CreateTracesToTraces(context.Background(), set, cfg, sink)
	if err != nil {
		f.Fatal(err)
	}
	stateIn, err := fac.CreateMetricsToMetrics(context.Background(), set, cfg, consumertest.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	_ = spansIn.Start(context.Background(), componenttest.NewNopHost())
	_ = stateIn.Start(context.Background(), componenttest.NewNopHost())
	defer func() { _ = spansIn.Shutdown(context.Background()); _ = stateIn.Shutdown(context.Background()) }()
	for sec := 0.0; sec <= 30; sec += 10 {
		_ = stateIn.ConsumeMetrics(context.Background(), fleetstatetest.Engine("r1", testModel, sec, steady(sec)))
	}
	f.Fuzz(func(t *testing.T, queue, prefill, decode, e2e, ttft float64, prompt, gen, cached, startOffset, duration int64) {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, "r1")
		s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		s.SetName("llm_request")
		start := fleetstatetest.At(5) + startOffset
		s.SetStartTimestamp(pcommon.Timestamp(uint64(start)))
		s.SetEndTimestamp(pcommon.Timestamp(uint64(start + duration)))
		a := s.Attributes()
		a.PutDouble(schema.AttrGenAILatencyTimeInQueue, queue)
		a.PutDouble(schema.AttrGenAILatencyTimeInModelPrefill, prefill)
		a.PutDouble(schema.AttrGenAILatencyTimeInModelDecode, decode)
		a.PutDouble(schema.AttrGenAILatencyE2e, e2e)
		a.PutDouble(schema.AttrGenAILatencyTimeToFirstToken, ttft)
		a.PutInt(schema.AttrGenAIUsagePromptTokens, prompt)
		a.PutInt(schema.AttrGenAIUsageCompletionTokens, gen)
		if cached >= 0 {
			a.PutInt(schema.AttrGenAIUsageCachedTokens, cached)
		}
		before := sink.SpanCount()
		if err := spansIn.ConsumeTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
		if sink.SpanCount() != before+1 {
			t.Fatalf("the span did not go on")
		}
		out := sink.AllTraces()[len(sink.AllTraces())-1].ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().AsRaw()
		total, all := 0.0, true
		for _, k := range []string{schema.AttrLLMLatencyQueue, schema.AttrLLMLatencyPrefill, schema.AttrLLMLatencyDecode, schema.AttrLLMLatencyOther} {
			v, ok := out[k].(float64)
			if !ok {
				all = false
				continue
			}
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("%s is %v", k, v)
			}
			total += v
		}
		if e, ok := out[schema.AttrLLMLatencyE2e].(float64); ok && all && !math.IsInf(total, 0) && math.Abs(total-e) > 1e-6*math.Max(1, math.Abs(e)) {
			t.Fatalf("phases add up to %v, e2e is %v", total, e)
		}
	})
}
