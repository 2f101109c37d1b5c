package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// rootCauseConfig: a sidecar that scrapes one vLLM replica, takes its request spans over OTLP, and sends the
// explained spans, the phase metrics and the slow-request logs to sink.
func rootCauseConfig(engineURL, otlpEndpoint, sinkURL string) string {
	return fmt.Sprintf(`
receivers:
  vllm:
    endpoint: %s
    collection_interval: 300ms
  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  llm_normalize: {}
connectors:
  llm_root_cause:
    max_wait: 5s
    metrics_flush_interval: 500ms
    slo:
      default:
        ttft: 1s
%s  pipelines:
    metrics:
      receivers: [vllm]
      processors: [llm_normalize]
      exporters: [llm_root_cause]
    traces:
      receivers: [otlp]
      exporters: [llm_root_cause]
    traces/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_http]
    metrics/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_http]
    logs/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_http]
`, engineURL, otlpEndpoint, sinkBlock(sinkURL))
}

func TestRootCauseThroughTheBinary(t *testing.T) {
	srv := engine(t, fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"))
	sink := newOTLPSink(t)
	otlpAddr := freePort(t)
	startCollector(t, rootCauseConfig(srv.URL, otlpAddr, sink.URL))

	// The recorded vLLM spans, each moved to end now so they are live for the collector, plus one request that
	// queued 3.3 s: slow against the 1 s TTFT SLO, on a replica the capture shows idle. The collector has been
	// scraping for longer than the longest of them first: a request's evidence is the state it ran in, and
	// none is known for a request that began before the first scrape.
	require.Eventually(t, func() bool {
		empty, err := ptraceotlp.NewExportRequestFromTraces(ptrace.NewTraces()).MarshalProto()
		require.NoError(t, err)
		status, err := httpPost("http://"+otlpAddr+"/v1/traces", empty)
		return err == nil && status == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "the collector takes OTLP spans")
	time.Sleep(4 * time.Second)
	td := fixtures.Spans(t, "traces/stormlog_vllm_q05_spans_sample.jsonl", map[string]string{"service.name": "vllm"})
	endEachNow(td)
	slow := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().AppendEmpty()
	slow.SetName("llm_request")
	slow.SetTraceID(pcommon.TraceID{0xaa, 1})
	slow.SetSpanID(pcommon.SpanID{0xaa, 1})
	end := time.Now()
	slow.SetStartTimestamp(pcommon.NewTimestampFromTime(end.Add(-3600 * time.Millisecond)))
	slow.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	for k, v := range map[string]float64{
		schema.AttrGenAILatencyTimeInQueue: 3.3, schema.AttrGenAILatencyTimeInModelPrefill: 0.1,
		schema.AttrGenAILatencyTimeInModelDecode: 0.19, schema.AttrGenAILatencyTimeToFirstToken: 3.41, schema.AttrGenAILatencyE2e: 3.6,
	} {
		slow.Attributes().PutDouble(k, v)
	}
	slow.Attributes().PutInt(schema.AttrGenAIUsagePromptTokens, 512)
	slow.Attributes().PutInt(schema.AttrGenAIUsageCompletionTokens, 20)
	slow.Attributes().PutStr(schema.AttrGenAIRequestID, "cmpl-slow-0")
	sent := td.SpanCount()

	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := http.Post("http://"+otlpAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond, "the collector takes OTLP spans")

	var spans []ptrace.Span
	require.Eventually(t, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		spans = spans[:0]
		for _, out := range sink.traces {
			for i := 0; i < out.ResourceSpans().Len(); i++ {
				ss := out.ResourceSpans().At(i).ScopeSpans()
				for j := 0; j < ss.Len(); j++ {
					for k := 0; k < ss.At(j).Spans().Len(); k++ {
						spans = append(spans, ss.At(j).Spans().At(k))
					}
				}
			}
		}
		return len(spans) >= sent
	}, 30*time.Second, 100*time.Millisecond, "every span comes out")
	assert.Len(t, spans, sent, "once each")

	explained := 0
	for _, s := range spans {
		a := s.Attributes().AsRaw()
		if s.Name() != "llm_request" {
			assert.NotContains(t, a, schema.AttrLLMRootCause)
			continue
		}
		explained++
		sum := a[schema.AttrLLMLatencyQueue].(float64) + a[schema.AttrLLMLatencyPrefill].(float64) +
			a[schema.AttrLLMLatencyDecode].(float64) + a[schema.AttrLLMLatencyOther].(float64)
		assert.InDelta(t, a[schema.AttrLLMLatencyE2e], sum, 1e-9)
		assert.Contains(t, a[schema.AttrLLMRootCauseEvidence], "queue ")
		assert.Equal(t, 0.0, a[schema.AttrLLMEvidenceQueueWaitingAtArrival], "joined with the scraped replica (a sidecar)")
		if s.SpanID() == slow.SpanID() {
			assert.Equal(t, true, a[schema.AttrLLMSlow])
			assert.Equal(t, "ttft", a[schema.AttrLLMSlowReason])
			assert.Equal(t, "unknown", a[schema.AttrLLMRootCause], "the replica shows no queue: no rule has evidence, so no guess")
		} else {
			assert.Equal(t, false, a[schema.AttrLLMSlow], "%v", a[schema.AttrLLMRootCauseEvidence])
			assert.Equal(t, "none", a[schema.AttrLLMRootCause])
		}
	}
	assert.Equal(t, 13, explained, "12 recorded requests and the slow one")

	phases := sink.waitFor(t, schema.MetricLLMRequestPhaseDuration, 20*time.Second)
	var counted uint64
	for _, m := range find(phases, schema.MetricLLMRequestPhaseDuration) {
		for i := 0; i < m.Histogram().DataPoints().Len(); i++ {
			dp := m.Histogram().DataPoints().At(i)
			if v, _ := dp.Attributes().Get(schema.AttrLLMPhase); v.Str() == "queue" {
				counted += dp.Count()
			}
			assert.Positive(t, dp.Exemplars().Len(), "exemplars carry trace ids")
		}
	}
	assert.Equal(t, uint64(13), counted, "one queue observation per request")

	require.Eventually(t, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, ld := range sink.logs {
			if ld.LogRecordCount() > 0 {
				rec := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
				return rec.TraceID() == slow.TraceID()
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond, "a log record for the slow request")
}

// endEachNow moves every span to end now, keeping its duration.
func endEachNow(td ptrace.Traces) {
	now := pcommon.NewTimestampFromTime(time.Now())
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				s := ss.At(j).Spans().At(k)
				s.SetStartTimestamp(now - (s.EndTimestamp() - s.StartTimestamp()))
				s.SetEndTimestamp(now)
			}
		}
	}
}

// shiftToNow moves every span so the last one ends now, keeping their spacing.
func shiftToNow(td ptrace.Traces) {
	var last pcommon.Timestamp
	each := func(fn func(ptrace.Span)) {
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				for k := 0; k < ss.At(j).Spans().Len(); k++ {
					fn(ss.At(j).Spans().At(k))
				}
			}
		}
	}
	each(func(s ptrace.Span) { last = max(last, s.EndTimestamp()) })
	shift := pcommon.NewTimestampFromTime(time.Now()) - last
	each(func(s ptrace.Span) {
		s.SetStartTimestamp(s.StartTimestamp() + shift)
		s.SetEndTimestamp(s.EndTimestamp() + shift)
	})
}

// signalsConfig: one vLLM replica into llm_signals; signals and incidents to sink.
func signalsConfig(engineURL, sinkURL string) string {
	return fmt.Sprintf(`
receivers:
  vllm:
    endpoint: %s
    collection_interval: 250ms
processors:
  llm_normalize: {}
connectors:
  llm_signals:
    interval: 1s
    stale: 3s
    state_window: 1m
%s  pipelines:
    metrics:
      receivers: [vllm]
      processors: [llm_normalize]
      exporters: [llm_signals]
    metrics/signals:
      receivers: [llm_signals]
      exporters: [otlp_http]
    logs/incidents:
      receivers: [llm_signals]
      exporters: [otlp_http]
`, engineURL, sinkBlock(sinkURL))
}

// A replica whose metrics endpoint goes away: its health drops and a stale-telemetry incident reaches the
// logs pipeline, with a start record carrying the detector, the replica and actions.
func TestSignalsThroughTheBinary(t *testing.T) {
	srv := engine(t, fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"))
	sink := newOTLPSink(t)
	startCollector(t, signalsConfig(srv.URL, sink.URL))

	healthy := sink.waitFor(t, schema.MetricLLMReplicaHealthScore, 30*time.Second)
	score := find(healthy, schema.MetricLLMReplicaHealthScore)[0].Gauge().DataPoints().At(0)
	assert.Equal(t, 1.0, score.DoubleValue(), "an idle, reachable replica is healthy")
	replica, _ := score.Attributes().Get(schema.AttrServiceInstanceID)
	assert.Equal(t, srv.Listener.Addr().String(), replica.Str())

	srv.Close() // the engine goes away
	var incident map[string]any
	require.Eventually(t, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, ld := range sink.logs {
			for i := 0; i < ld.ResourceLogs().Len(); i++ {
				recs := ld.ResourceLogs().At(i).ScopeLogs().At(0).LogRecords()
				for j := 0; j < recs.Len(); j++ {
					if a := recs.At(j).Attributes().AsRaw(); a[schema.AttrLLMIncidentDetector] == "stale_telemetry" && a[schema.AttrLLMIncidentState] == "start" {
						incident = a
						return true
					}
				}
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "a stale-telemetry incident in the logs pipeline")
	assert.Equal(t, replica.Str(), incident[schema.AttrServiceInstanceID])
	assert.NotEmpty(t, incident[schema.AttrLLMIncidentActions])
	assert.NotEmpty(t, incident[schema.AttrLLMIncidentID])
}

// make demo, shortened: the fleet, the collector and the console run, the console reads like a report, and
// nothing is left running afterwards.
func TestDemo(t *testing.T) {
	cmd := exec.Command("go", "run", "../../cmd/servescope-demo", "-collector", binary, "-config", "../../config/demo.yaml",
		"-duration", "12s", "-scenario", "traffic_spike")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	text := string(out)
	assert.Contains(t, text, "servescope demo: traffic_spike")
	assert.Regexp(t, `replica\s+engine\s+waiting\s+running\s+KV\s+GPU\s+health`, text)
	assert.Regexp(t, `slow\s+\d+\.\ds\s+\S+\s+\S+\s+queue \d`, text, "slow requests with their breakdown")
	assert.Regexp(t, `servescope explained \d+ requests; \d+ were slow`, text)
	assert.Regexp(t, `agrees on the cause of \d+ of those \d+ slow requests`, text)
	assert.NotContains(t, text, "panic")
	ps, _ := exec.Command("pgrep", "-f", "config/demo.yaml").Output()
	assert.Empty(t, strings.TrimSpace(string(ps)), "no collector left behind")
}

// llm_routing through the binary: a router reads the replica's model-server endpoint and the JSON views,
// and a replica that goes away turns stale (503) instead of looking idle.
func TestRoutingThroughTheBinary(t *testing.T) {
	srv := engine(t, fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"))
	routing := freePort(t)
	startCollector(t, fmt.Sprintf(`
receivers:
  vllm:
    endpoint: %s
    collection_interval: 250ms
processors:
  llm_normalize: {}
connectors:
  llm_signals:
    interval: 1s
    stale: 3s
    state_window: 1m
exporters:
  llm_routing:
    endpoint: %s
    stale: 3s
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [vllm]
      processors: [llm_normalize]
      exporters: [llm_signals, llm_routing]
    metrics/signals:
      receivers: [llm_signals]
      exporters: [llm_routing]
`, srv.URL, routing))
	instance := srv.Listener.Addr().String()
	modelServer := "http://" + routing + "/model-server/" + instance + "/metrics"
	var body string
	require.Eventually(t, func() bool {
		var status int
		status, body = fetch(modelServer)
		return status == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond, "the model-server endpoint answers")
	assert.Contains(t, body, "vllm:num_requests_waiting{model_name=")
	assert.Contains(t, body, "vllm:kv_cache_usage_perc{model_name=")

	require.Eventually(t, func() bool {
		_, replicas := fetch("http://" + routing + "/v1/replicas")
		return strings.Contains(replicas, `"healthy": true`) && strings.Contains(replicas, `"routing_score": `)
	}, 30*time.Second, 200*time.Millisecond, "a healthy replica with a routing score from llm_signals")

	srv.Close()
	require.Eventually(t, func() bool {
		status, _ := fetch(modelServer)
		return status == http.StatusServiceUnavailable
	}, 30*time.Second, 200*time.Millisecond, "a replica that went away is stale, not idle")
}
