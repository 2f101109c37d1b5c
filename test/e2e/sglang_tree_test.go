package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/schema"
)

// The simulator's SGLang replicas (TP 2) write SGLang's request trees; each process's spans go to the
// collector as SGLang's exporters send them, apart: rank 1's scheduler first, then the tokenizer's (the
// request spans), then rank 0's. Every request comes out explained once, on its request span, with the
// phases the simulator ran, and is counted once in the metrics.
func TestSGLangTreesThroughTheBinary(t *testing.T) {
	cfg := fleetsim.DefaultConfig()
	sc, err := fleetsim.LookupScenario("baseline")
	require.NoError(t, err)
	cfg.Scenario = sc
	cfg.Engines = []string{fleetsim.EngineSGLang, fleetsim.EngineSGLang}
	cfg.TP = 2
	cfg.Duration, cfg.Drain = 5*time.Second, 30*time.Second
	cfg.Epoch = time.Now().Add(-time.Minute)
	fleet, err := fleetsim.New(cfg)
	require.NoError(t, err)
	for at := 1.0; !fleet.Done(); at++ {
		fleet.Advance(at)
	}
	truth := map[string]fleetsim.Truth{} // by trace id
	for _, tr := range fleet.GroundTruth() {
		truth[tr.TraceID] = tr
	}
	require.NotEmpty(t, truth)
	t.Logf("%d requests on %d SGLang replicas, TP %d", len(truth), len(fleet.State()), cfg.TP)
	rank1, rest, rank0 := splitByScheduler(fleet.TakeTraces())
	require.Positive(t, rank0.SpanCount())
	require.Positive(t, rank1.SpanCount())

	sink := newOTLPSink(t)
	otlpAddr := freePort(t)
	startCollector(t, fmt.Sprintf(`
receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
connectors:
  llm_root_cause:
    max_wait: 20s
    metrics_flush_interval: 500ms
%s  pipelines:
    traces:
      receivers: [otlp]
      exporters: [llm_root_cause]
    traces/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_http]
    metrics/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_http]
`, otlpAddr, sinkBlock(sink.URL)))
	post := func(td ptrace.Traces) {
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			status, err := httpPost("http://"+otlpAddr+"/v1/traces", body)
			return err == nil && status == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond, "the collector takes OTLP spans")
	}
	explained := func() map[string][]ptrace.Span {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		out := map[string][]ptrace.Span{}
		for _, td := range sink.traces {
			eachSpan(td, func(s ptrace.Span) {
				if _, ok := s.Attributes().Get(schema.AttrLLMRootCause); ok {
					out[s.TraceID().String()] = append(out[s.TraceID().String()], s)
				}
			})
		}
		return out
	}
	post(rank1)
	post(rest)
	time.Sleep(time.Second)
	assert.Empty(t, explained(), "the request spans wait for rank 0's slices")
	post(rank0)

	var got map[string][]ptrace.Span
	require.Eventually(t, func() bool {
		got = explained()
		return len(got) == len(truth)
	}, 30*time.Second, 100*time.Millisecond, "every request explained")
	const ms = 1e-3
	for trace, spans := range got {
		tr, ok := truth[trace]
		require.True(t, ok, "trace %s is one of the simulator's", trace)
		require.Len(t, spans, 1, "request %s: one explained span", tr.RequestID)
		s := spans[0]
		assert.Equal(t, fleetsim.SGLangRequestSpan(tr.RequestID), s.Name())
		a := s.Attributes().AsRaw()
		assert.InDelta(t, tr.QueueS, a[schema.AttrLLMLatencyQueue], ms, "queue of %s", tr.RequestID)
		assert.InDelta(t, tr.PrefillS, a[schema.AttrLLMLatencyPrefill], ms, "prefill of %s", tr.RequestID)
		assert.InDelta(t, tr.DecodeS, a[schema.AttrLLMLatencyDecode], ms, "decode of %s", tr.RequestID)
		assert.InDelta(t, tr.TTFTS, a[schema.AttrLLMLatencyTtft], ms, "ttft of %s", tr.RequestID)
	}

	// Metrics are cumulative: the newest batch with the root causes counts every request once.
	counted := func() float64 {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		total := 0.0
		for i := len(sink.batches) - 1; i >= 0; i-- {
			if ms := find(sink.batches[i], schema.MetricLLMRequestRootCause); len(ms) > 0 {
				for _, m := range ms {
					dps := m.Sum().DataPoints()
					for j := 0; j < dps.Len(); j++ {
						total += numberValue(dps.At(j))
					}
				}
				return total
			}
		}
		return 0
	}
	require.Eventually(t, func() bool { return counted() == float64(len(truth)) }, 20*time.Second, 100*time.Millisecond,
		"llm.request.root_cause counts %d requests", len(truth))
}

func numberValue(dp pmetric.NumberDataPoint) float64 {
	if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(dp.IntValue())
	}
	return dp.DoubleValue()
}

func eachSpan(td ptrace.Traces, fn func(ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				fn(ss.At(j).Spans().At(k))
			}
		}
	}
}

// splitByScheduler cuts the simulator's traces as SGLang's processes export them: each scheduler rank's
// thread spans and slices apart from the rest (the gateway's spans, the tokenizer's request spans, its
// thread spans and slices).
func splitByScheduler(td ptrace.Traces) (rank1, rest, rank0 ptrace.Traces) {
	rank1, rest, rank0 = ptrace.NewTraces(), ptrace.NewTraces(), ptrace.NewTraces()
	// The thread span a span belongs to: itself, or its parent.
	rankOf := map[[24]byte]int64{}
	key := func(tid pcommon.TraceID, sid pcommon.SpanID) (k [24]byte) {
		copy(k[:16], tid[:])
		copy(k[16:], sid[:])
		return k
	}
	eachSpan(td, func(s ptrace.Span) {
		if label, ok := s.Attributes().Get("thread_label"); ok && label.Str() == "Scheduler" {
			r, _ := s.Attributes().Get("tp_rank")
			rankOf[key(s.TraceID(), s.SpanID())] = r.Int()
		}
	})
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		var outs [3]ptrace.SpanSlice
		for n, out := range []ptrace.Traces{rank1, rest, rank0} {
			o := out.ResourceSpans().AppendEmpty()
			rs.Resource().CopyTo(o.Resource())
			outs[n] = o.ScopeSpans().AppendEmpty().Spans()
			if rs.ScopeSpans().Len() > 0 {
				rs.ScopeSpans().At(0).Scope().CopyTo(o.ScopeSpans().At(0).Scope())
			}
		}
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				s := spans.At(k)
				rank, own := rankOf[key(s.TraceID(), s.SpanID())]
				if !own {
					rank, own = rankOf[key(s.TraceID(), s.ParentSpanID())]
				}
				switch {
				case own && rank == 0:
					s.CopyTo(outs[2].AppendEmpty())
				case own:
					s.CopyTo(outs[0].AppendEmpty())
				default:
					s.CopyTo(outs[1].AppendEmpty())
				}
			}
		}
	}
	return rank1, rest, rank0
}
