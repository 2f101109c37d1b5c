package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// Two tiers: a sidecar next to one replica explains its spans and watches it, and sends everything over OTLP
// to a gateway collector that writes it to files. Enriched spans, canonical metrics and incident logs must
// arrive with the replica named on them. TestFleetSidecarsToGateway runs the documented configurations on a
// simulated fleet, one sidecar per replica.
func TestSidecarToGateway(t *testing.T) {
	dir := t.TempDir()
	gatewayOTLP := freePort(t)
	startCollector(t, fmt.Sprintf(`
receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
exporters:
  file/traces:
    path: %s
  file/metrics:
    path: %s
  file/logs:
    path: %s
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {receivers: [otlp], exporters: [file/traces]}
    metrics: {receivers: [otlp], exporters: [file/metrics]}
    logs: {receivers: [otlp], exporters: [file/logs]}
`, gatewayOTLP, filepath.Join(dir, "traces.jsonl"), filepath.Join(dir, "metrics.jsonl"), filepath.Join(dir, "logs.jsonl")))

	srv := engine(t, fixtures.Read(t, "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"))
	sidecarOTLP := freePort(t)
	startCollector(t, fmt.Sprintf(`
receivers:
  vllm:
    endpoint: %s
    collection_interval: 250ms
  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  llm_normalize: {}
connectors:
  llm_root_cause:
    max_wait: 2s
  llm_signals:
    interval: 1s
    stale: 3s
    state_window: 1m
exporters:
  otlp_http/gateway:
    endpoint: http://%s
    compression: none
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [vllm]
      processors: [llm_normalize]
      exporters: [otlp_http/gateway, llm_root_cause, llm_signals]
    traces:
      receivers: [otlp]
      exporters: [llm_root_cause]
    traces/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_http/gateway]
    logs/incidents:
      receivers: [llm_signals]
      exporters: [otlp_http/gateway]
`, srv.URL, sidecarOTLP, gatewayOTLP))
	replica := srv.Listener.Addr().String()

	td := fixtures.Spans(t, "traces/stormlog_vllm_q05_spans_sample.jsonl", map[string]string{"service.name": "vllm", schema.AttrServiceInstanceID: replica})
	shiftToNow(td)
	body, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return postProto("http://"+sidecarOTLP+"/v1/traces", body) }, 30*time.Second, 200*time.Millisecond)

	require.Eventually(t, func() bool {
		explained := 0
		for _, line := range lines(filepath.Join(dir, "traces.jsonl")) {
			got, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces([]byte(line))
			if err != nil {
				continue
			}
			for i := 0; i < got.ResourceSpans().Len(); i++ {
				rs := got.ResourceSpans().At(i)
				inst, _ := rs.Resource().Attributes().Get(schema.AttrServiceInstanceID)
				spans := rs.ScopeSpans().At(0).Spans()
				for j := 0; j < spans.Len(); j++ {
					if _, ok := spans.At(j).Attributes().Get(schema.AttrLLMRootCause); ok && inst.Str() == replica {
						explained++
					}
				}
			}
		}
		return explained == 12
	}, 30*time.Second, 200*time.Millisecond, "the 12 recorded requests reach the gateway explained, with their replica")

	require.Eventually(t, func() bool {
		for _, md := range readJSONLines(filepath.Join(dir, "metrics.jsonl")) {
			if len(find(md, schema.MetricLLMSchedulerRequestsWaiting)) == 0 {
				continue
			}
			for i := 0; i < md.ResourceMetrics().Len(); i++ {
				if v, ok := md.ResourceMetrics().At(i).Resource().Attributes().Get(schema.AttrServiceInstanceID); ok && v.Str() == replica {
					return true
				}
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "canonical engine metrics reach the gateway with their replica")

	srv.Close() // the replica goes away: the sidecar's llm_signals opens a stale-telemetry incident
	require.Eventually(t, func() bool {
		for _, line := range lines(filepath.Join(dir, "logs.jsonl")) {
			ld, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs([]byte(line))
			if err != nil {
				continue
			}
			for i := 0; i < ld.ResourceLogs().Len(); i++ {
				recs := ld.ResourceLogs().At(i).ScopeLogs().At(0).LogRecords()
				for j := 0; j < recs.Len(); j++ {
					a := recs.At(j).Attributes().AsRaw()
					if a[schema.AttrLLMIncidentDetector] == "stale_telemetry" && a[schema.AttrServiceInstanceID] == replica {
						return true
					}
				}
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "the incident reaches the gateway's logs")
}

func lines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func postProto(url string, body []byte) bool {
	status, err := httpPost(url, body)
	return err == nil && status == 200
}
