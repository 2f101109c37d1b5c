package llmrootcauseconnector

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadatatest"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

const testModel = "llama-70b"

// rig is the connector as a collector wires it: spans in with traces, metrics and logs out, metrics in.
type rig struct {
	t       *testing.T
	traces  *consumertest.TracesSink
	metrics *consumertest.MetricsSink
	logs    *consumertest.LogsSink
	tel     *componenttest.Telemetry // the connector's own telemetry
	spansIn []connector.Traces
	stateIn connector.Metrics
	all     []interface {
		Shutdown(context.Context) error
	}
}

func newRig(t *testing.T, mutate ...func(*Config)) *rig {
	t.Helper()
	cfg := createDefaultConfig()
	cfg.SLO.Models = map[string]Limits{testModel: {TTFT: time.Second, TPOT: 50 * time.Millisecond, E2E: 10 * time.Second}}
	for _, m := range mutate {
		m(cfg)
	}
	require.NoError(t, cfg.Validate())
	r := &rig{t: t, traces: &consumertest.TracesSink{}, metrics: &consumertest.MetricsSink{}, logs: &consumertest.LogsSink{}}
	f := NewFactory()
	r.tel = componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, r.tel.Shutdown(context.Background())) }) // after the shutdown below
	set := metadatatest.NewSettings(r.tel)
	ctx := context.Background()
	tt, err := f.CreateTracesToTraces(ctx, set, cfg, r.traces)
	require.NoError(t, err)
	tm, err := f.CreateTracesToMetrics(ctx, set, cfg, r.metrics)
	require.NoError(t, err)
	tl, err := f.CreateTracesToLogs(ctx, set, cfg, r.logs)
	require.NoError(t, err)
	mm, err := f.CreateMetricsToMetrics(ctx, set, cfg, &consumertest.MetricsSink{})
	require.NoError(t, err)
	r.spansIn = []connector.Traces{tt, tm, tl}
	r.stateIn = mm
	for _, c := range []interface {
		Start(context.Context, component.Host) error
		Shutdown(context.Context) error
	}{tt, tm, tl, mm} {
		require.NoError(t, c.Start(ctx, componenttest.NewNopHost()))
		r.all = append(r.all, c)
	}
	t.Cleanup(func() { r.shutdown() })
	return r
}

func (r *rig) shutdown() {
	for _, c := range r.all {
		require.NoError(r.t, c.Shutdown(context.Background()))
	}
	r.all = nil
}

// state feeds canonical metrics, as the metrics pipeline's fan-out does: every metrics instance gets them.
func (r *rig) state(md pmetric.Metrics) {
	require.NoError(r.t, r.stateIn.ConsumeMetrics(context.Background(), md))
}

// send hands a batch to every traces instance, as the collector's fan-out does.
func (r *rig) send(td ptrace.Traces) {
	for _, in := range r.spansIn {
		data := td
		if in.Capabilities().MutatesData {
			data = ptrace.NewTraces()
			td.CopyTo(data)
		}
		require.NoError(r.t, in.ConsumeTraces(context.Background(), data))
	}
}

// call is one request as a gateway and a vLLM replica report it: a gateway span carrying the tenant and
// prompt family, and the engine's llm_request span as its child, phases in seconds.
type call struct {
	replica, tenant, family, id string
	start                       float64 // seconds after fleetstatetest.Epoch
	queue, prefill, decode      float64
	other                       float64
	prompt, gen                 int
	cached                      int // -1: the engine does not report it (vLLM)
	model                       string
}

var spanSeq uint64

func nextIDs() (pcommon.TraceID, pcommon.SpanID, pcommon.SpanID) {
	spanSeq++
	var tid [16]byte
	var gw, eng [8]byte
	binary.BigEndian.PutUint64(tid[8:], spanSeq)
	binary.BigEndian.PutUint64(gw[:], 2*spanSeq)
	binary.BigEndian.PutUint64(eng[:], 2*spanSeq+1)
	return tid, gw, eng
}

func ns(sec float64) pcommon.Timestamp { return pcommon.Timestamp(fleetstatetest.At(sec)) }

func (c call) e2e() float64 { return c.queue + c.prefill + c.decode + c.other }

// appendTo writes the call's two spans into td.
func (c call) appendTo(td ptrace.Traces) {
	tid, gwID, engID := nextIDs()
	end := c.start + c.e2e()
	if c.tenant != "" || c.family != "" {
		gw := td.ResourceSpans().AppendEmpty()
		gw.Resource().Attributes().PutStr("service.name", "gateway")
		s := gw.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		s.SetName("POST /v1/completions")
		s.SetKind(ptrace.SpanKindServer)
		s.SetTraceID(tid)
		s.SetSpanID(gwID)
		s.SetStartTimestamp(ns(c.start - 0.001))
		s.SetEndTimestamp(ns(end + 0.001))
		if c.tenant != "" {
			s.Attributes().PutStr("tenant.id", c.tenant)
		}
		if c.family != "" {
			s.Attributes().PutStr(schema.AttrLLMPromptFamily, c.family)
		}
		s.Attributes().PutStr(schema.AttrGenAIRequestID, c.id)
	}
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "vllm")
	if c.replica != "" {
		rs.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, c.replica)
	}
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("vllm.llm_engine")
	s := ss.Spans().AppendEmpty()
	s.SetName("llm_request")
	s.SetKind(ptrace.SpanKindServer)
	s.SetTraceID(tid)
	s.SetSpanID(engID)
	if c.tenant != "" || c.family != "" {
		s.SetParentSpanID(gwID)
	}
	s.SetStartTimestamp(ns(c.start))
	s.SetEndTimestamp(ns(end))
	a := s.Attributes()
	a.PutDouble(schema.AttrGenAILatencyTimeInQueue, c.queue)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelPrefill, c.prefill)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelDecode, c.decode)
	a.PutDouble(schema.AttrGenAILatencyTimeInModelInference, c.prefill+c.decode)
	a.PutDouble(schema.AttrGenAILatencyTimeToFirstToken, c.queue+c.prefill+c.other/2)
	a.PutDouble(schema.AttrGenAILatencyE2e, c.e2e())
	a.PutInt(schema.AttrGenAIUsagePromptTokens, int64(c.prompt))
	a.PutInt(schema.AttrGenAIUsageCompletionTokens, int64(c.gen))
	if c.cached >= 0 {
		a.PutInt(schema.AttrGenAIUsageCachedTokens, int64(c.cached))
	}
	a.PutStr(schema.AttrGenAIRequestID, c.id)
	if c.model != "" {
		a.PutStr(schema.AttrGenAIResponseModel, c.model)
	}
}

func batchOf(calls ...call) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, c := range calls {
		c.appendTo(td)
	}
	return td
}

// explained returns the enriched engine span of every request id the connector has sent on.
func (r *rig) explained() map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, td := range r.traces.AllTraces() {
		forEachSpan(td, func(_ pcommon.Map, s ptrace.Span) {
			if s.Name() == "llm_request" {
				id, _ := s.Attributes().Get(schema.AttrGenAIRequestID)
				out[id.Str()] = s.Attributes().AsRaw()
			}
		})
	}
	return out
}

func forEachSpan(td ptrace.Traces, fn func(res pcommon.Map, s ptrace.Span)) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				fn(rs.Resource().Attributes(), spans.At(k))
			}
		}
	}
}

func logRecords(sink *consumertest.LogsSink) []plog.LogRecord {
	var out []plog.LogRecord
	for _, ld := range sink.AllLogs() {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			sls := ld.ResourceLogs().At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				for k := 0; k < sls.At(j).LogRecords().Len(); k++ {
					out = append(out, sls.At(j).LogRecords().At(k))
				}
			}
		}
	}
	return out
}
