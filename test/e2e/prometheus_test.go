package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/dashboards"
	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/schema"
)

// The whole chain against a real Prometheus: the simulator's fleet, the collector scraping it and taking
// its spans, Prometheus scraping the collector and loading the generated alert rules, and the collector
// remote-writing into the same Prometheus. Then every PromQL expression of every generated dashboard panel
// and alert rule runs through Prometheus's HTTP API: no expression may fail, and every dashboard expression
// must return data (the traffic spike exercises every panel, cost included).
func TestDashboardsAndAlertsAgainstPrometheus(t *testing.T) {
	prometheus, err := exec.LookPath("prometheus")
	require.NoError(t, err, "Prometheus is needed (make deps installs Debian's prometheus package)")

	cfg := fleetsim.DefaultConfig()
	sc, err := fleetsim.LookupScenario("traffic_spike")
	require.NoError(t, err)
	cfg.Scenario, cfg.Duration, cfg.Drain = sc, 36*time.Second, 5*time.Second
	cfg.Engines = []string{fleetsim.EngineVLLM, fleetsim.EngineSGLang}
	fleet, err := fleetsim.New(cfg)
	require.NoError(t, err)
	eps, err := fleet.Serve("127.0.0.1", 0)
	require.NoError(t, err)
	t.Cleanup(func() { fleet.Close() })

	// Beside the simulated fleet, one replica of each second-wave engine, serving its page as it would.
	var extra []string
	for _, p := range secondWavePages {
		extra = append(extra, fmt.Sprintf("%s/secondwave:\n    endpoint: %s\n    collection_interval: 1s\n", p.receiver, p.serve(t)))
	}

	promAddr, exporterAddr, otlpAddr := freePort(t), freePort(t), freePort(t)
	startCollector(t, collectorForPrometheus(eps, otlpAddr, exporterAddr, promAddr, extra...))
	dir := t.TempDir()
	rules, err := filepath.Abs("../../alerts/servescope-rules.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: servescope
    honor_labels: true # each replica keeps its own instance label rather than the collector's
    static_configs:
      - targets: [%q]
`, rules, exporterAddr)), 0o600))
	prom := exec.Command(prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--web.enable-remote-write-receiver")
	var promLog syncBuffer
	prom.Stdout, prom.Stderr = &promLog, &promLog
	require.NoError(t, prom.Start())
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", promLog.String())
		}
	})

	// Run the fleet in real time (span timestamps and scrapes agree), shipping its spans to the collector.
	exporter := fleetsim.NewOTLPExporter("http://" + otlpAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	last := time.Now()
	require.NoError(t, fleet.RunRealtime(ctx, 1, func() {
		if time.Since(last) >= 250*time.Millisecond {
			_ = exporter.Export(ctx, fleet.TakeTraces())
			last = time.Now()
		}
	}))
	_ = exporter.Export(ctx, fleet.TakeTraces())
	time.Sleep(5 * time.Second) // the last flushes of the connectors and a scrape of them

	sch, err := schema.Default()
	require.NoError(t, err)
	set, err := dashboards.Set(sch)
	require.NoError(t, err)
	for _, d := range set {
		for _, p := range d.Panels {
			for _, e := range p.Exprs {
				n, err := query(promAddr, e.Query)
				require.NoError(t, err, "%s / %s: %s", d.Title, p.Title, e.Query)
				t.Logf("%3d series  %s / %s", n, d.Title, p.Title)
				assert.Positive(t, n, "%s / %s returned no data: %s", d.Title, p.Title, e.Query)
			}
		}
	}
	firing := map[string]bool{}
	for _, r := range dashboards.Rules(sch) {
		n, err := query(promAddr, r.Expr)
		require.NoError(t, err, "alert %s: %s", r.Alert, r.Expr)
		firing[r.Alert] = n > 0
	}
	assert.True(t, firing["LLM_SchedulerSaturation"], "the spike saturates the schedulers: its alert expression has data")
	assert.False(t, firing["LLMEngineDown"], "both engines answer")

	checkSecondWaveReplicas(t, sch, set, promAddr)

	// The prometheus_remote_write exporter wrote the same canonical series, marked by its external label.
	n, err := query(promAddr, fmt.Sprintf(`%s{written_by="remote_write"}`, "llm_scheduler_requests_waiting"))
	require.NoError(t, err)
	assert.Positive(t, n, "remote-written series arrive")

	// Prometheus loaded the generated rules.
	_, body := fetch("http://" + promAddr + "/api/v1/rules")
	assert.Contains(t, body, `"name":"LLM_KvThrash"`)
}

// query runs an instant PromQL query and returns how many series it returned.
func query(promAddr, expr string) (int, error) {
	status, body := fetch("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(expr))
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return 0, fmt.Errorf("HTTP %d: %s", status, body)
	}
	if resp.Status != "success" {
		return 0, fmt.Errorf("%s", resp.Error)
	}
	return len(resp.Data.Result), nil
}

func collectorForPrometheus(eps []fleetsim.Endpoint, otlpAddr, exporterAddr, promAddr string, extra ...string) string {
	var recv, names, dcgm strings.Builder
	for _, block := range extra { // "<type>/<name>:\n    endpoint: ...\n"
		fmt.Fprintf(&recv, "  %s", block)
		fmt.Fprintf(&names, "%s, ", block[:strings.IndexByte(block, ':')])
	}
	for i, ep := range eps {
		fmt.Fprintf(&recv, "  %s/%d:\n    endpoint: %s\n    collection_interval: 1s\n", strings.ReplaceAll(ep.Engine, "llamacpp", "llama_cpp"), i, ep.URL)
		fmt.Fprintf(&names, "%s/%d, ", ep.Engine, i)
		fmt.Fprintf(&dcgm, "            - targets: [%q]\n              labels: {instance: %q}\n", strings.TrimPrefix(ep.DCGM, "http://"), ep.Instance)
	}
	return fmt.Sprintf(`receivers:
%s  prometheus/dcgm:
    config:
      scrape_configs:
        - job_name: dcgm
          scrape_interval: 1s
          static_configs:
%s  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  llm_normalize: {}
connectors:
  llm_root_cause:
    max_wait: 2s
    metrics_flush_interval: 2s
    slo:
      default: {ttft: 1s, tpot: 50ms, e2e: 40s}
  llm_signals:
    interval: 2s
    stale: 10s
    cost:
      default_gpu_price_per_hour: 2.5
exporters:
  prometheus:
    endpoint: %s
    resource_constant_labels:
      excluded: [service.name, service.instance.id, service.namespace]
  prometheus_remote_write:
    endpoint: http://%s/api/v1/write
    external_labels:
      written_by: remote_write
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [%sprometheus/dcgm]
      processors: [llm_normalize]
      exporters: [prometheus, prometheus_remote_write, llm_root_cause, llm_signals]
    traces:
      receivers: [otlp]
      exporters: [llm_root_cause]
    metrics/explained:
      receivers: [llm_root_cause]
      exporters: [prometheus, llm_signals]
    metrics/signals:
      receivers: [llm_signals]
      exporters: [prometheus]
`, recv.String(), dcgm.String(), otlpAddr, exporterAddr, promAddr, names.String())
}
