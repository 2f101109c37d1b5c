package e2e

import (
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The embedded default configuration (no --config, no SLO anywhere) next to one simulated vLLM replica
// whose traffic spikes 3.5x midway: without being told what slow means, it judges the spike's requests slow
// and names the queue. Issue 16: what most people run first must explain a fault.
func TestDefaultConfigExplainsAFaultWithoutSLOs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a simulated minute in real time")
	}
	t.Parallel()
	sim := simulatorBinary(t)
	base := freePortRange(t, 2)
	prom, otlpHTTP := freePort(t), freePort(t)
	startCollector(t, "",
		"SERVESCOPE_VLLM_ENDPOINT=http://127.0.0.1:"+strconv.Itoa(base),
		"SERVESCOPE_PROMETHEUS_ENDPOINT="+prom,
		"SERVESCOPE_OTLP_GRPC_ENDPOINT="+freePort(t),
		"SERVESCOPE_OTLP_HTTP_ENDPOINT="+otlpHTTP,
		"SERVESCOPE_HEALTH_ENDPOINT="+freePort(t))
	require.Eventually(t, func() bool { status, _ := fetch("http://" + prom + "/metrics"); return status == 200 },
		30*time.Second, 200*time.Millisecond, "the collector is up")

	const duration = 75 * time.Second
	cmd := exec.Command(sim, "-scenario", "traffic_spike", "-replicas", "1", "-engines", "vllm",
		"-duration", duration.String(), "-drain", "10s", "-base-port", strconv.Itoa(base),
		"-otlp-endpoint", "http://"+otlpHTTP, "-status-every", "0")
	var simErr syncBuffer
	cmd.Stderr = &simErr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("simulator stderr:\n%s", simErr.String())
		}
	})

	// The root-cause counter on the Prometheus endpoint, by cause, once the spike's requests are explained.
	series := regexp.MustCompile(`(?m)^llm_request_root_cause_total\{[^}]*llm_root_cause="([a-z_]+)"[^}]*\} (\S+)$`)
	causes := map[string]float64{}
	require.Eventually(t, func() bool {
		_, page := fetch("http://" + prom + "/metrics")
		clear(causes)
		for _, m := range series.FindAllStringSubmatch(page, -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			causes[m[1]] += v
		}
		return causes["queue_saturation"] >= 5
	}, duration+60*time.Second, time.Second, "queue_saturation named for the spike's requests")
	total := 0.0
	for _, n := range causes {
		total += n
	}
	t.Logf("causes of %v requests explained with the embedded default configuration: %v", total, causes)
	require.Less(t, causes["unknown"], causes["queue_saturation"], "the queue is named, not shrugged at")
}
