// Package e2e runs the built otelcol-servescope binary against local engine servers and reads what it
// exports. `make test` builds the binary and passes it in SERVESCOPE_BIN; without it, TestMain builds one.
package e2e

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.yaml.in/yaml/v3"

	"github.com/servescope/servescope/internal/metricstest"
)

var binary string

func TestMain(m *testing.M) {
	// The sigv4auth extension resolves AWS credentials when it starts: give it static ones so it never asks
	// the EC2 metadata service (tests talk to loopback only).
	for k, v := range map[string]string{"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"} {
		_ = os.Setenv(k, v)
	}
	binary = os.Getenv("SERVESCOPE_BIN")
	if binary == "" {
		dir, err := os.MkdirTemp("", "servescope-e2e")
		if err != nil {
			panic(err)
		}
		binary = filepath.Join(dir, "otelcol-servescope")
		tags, err := distBuildTags()
		if err != nil {
			panic(err)
		}
		build := exec.Command("go", "build", "-tags", tags, "-o", binary, "../../cmd/otelcol-servescope")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the collector for e2e tests:", err)
			os.Exit(1)
		}
		code := m.Run()
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// distBuildTags are the build tags of the distribution, from the builder manifest as make build reads them.
func distBuildTags() (string, error) {
	raw, err := os.ReadFile("../../builder-config.yaml")
	if err != nil {
		return "", err
	}
	var manifest struct {
		Dist struct {
			BuildTags string `yaml:"build_tags"`
		} `yaml:"dist"`
	}
	if err := yaml.Unmarshal(raw, &manifest); err != nil {
		return "", fmt.Errorf("builder-config.yaml: %w", err)
	}
	if manifest.Dist.BuildTags == "" {
		return "", errors.New("builder-config.yaml has no dist::build_tags")
	}
	return manifest.Dist.BuildTags, nil
}

// engine serves one capture as an engine's /metrics (and vLLM's /version).
func engine(t *testing.T, body []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = w.Write(body)
		case "/version":
			_, _ = w.Write([]byte(`{"version":"0.11.2"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// otlpSink is an OTLP/HTTP endpoint that keeps what the collector exports: metrics, traces and logs.
type otlpSink struct {
	*httptest.Server
	mu      sync.Mutex
	batches []pmetric.Metrics
	traces  []ptrace.Traces
	logs    []plog.Logs
}

func newOTLPSink(t *testing.T) *otlpSink {
	s := &otlpSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var resp []byte
		s.mu.Lock()
		switch r.URL.Path {
		case "/v1/traces":
			req := ptraceotlp.NewExportRequest()
			if err = req.UnmarshalProto(raw); err == nil {
				s.traces = append(s.traces, req.Traces())
				resp, _ = ptraceotlp.NewExportResponse().MarshalProto()
			}
		case "/v1/logs":
			req := plogotlp.NewExportRequest()
			if err = req.UnmarshalProto(raw); err == nil {
				s.logs = append(s.logs, req.Logs())
				resp, _ = plogotlp.NewExportResponse().MarshalProto()
			}
		default:
			req := pmetricotlp.NewExportRequest()
			if err = req.UnmarshalProto(raw); err == nil {
				s.batches = append(s.batches, req.Metrics())
				resp, _ = pmetricotlp.NewExportResponse().MarshalProto()
			}
		}
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(s.Close)
	return s
}

// waitFor returns the first exported batch that has metric name, failing after timeout.
func (s *otlpSink) waitFor(t *testing.T, name string, timeout time.Duration) pmetric.Metrics {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, md := range s.batches {
			if len(find(md, name)) > 0 {
				s.mu.Unlock()
				return md
			}
		}
		s.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no exported batch with %s within %s", name, timeout)
	return pmetric.Metrics{}
}

func find(md pmetric.Metrics, name string) []pmetric.Metric { return metricstest.Metrics(md, name) }

// collector is one running otelcol-servescope process.
type collector struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCollector runs the binary with the given config (none: the embedded default) and environment, and
// stops it gracefully at the end of the test, failing the test if it does not exit cleanly.
func startCollector(t *testing.T, config string, env ...string) *collector {
	t.Helper()
	var args []string
	if config != "" {
		path := filepath.Join(t.TempDir(), "config.yaml")
		require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
		args = append(args, "--config", path)
	}
	c := &collector{cmd: exec.Command(binary, args...), output: &syncBuffer{}, done: make(chan error, 1)}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.output, c.output
	require.NoError(t, c.cmd.Start())
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("collector output:\n%s", c.output.String())
		}
		c.stop(t)
	})
	return c
}

// stop sends SIGTERM and expects a clean exit within 10 s (graceful shutdown).
func (c *collector) stop(t *testing.T) {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("collector exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		t.Errorf("collector did not shut down within 10s of SIGTERM")
	}
}

// count returns how many output lines contain substr.
func (c *collector) count(substr string) int {
	return strings.Count(c.output.String(), substr)
}

// sinkBlock is the exporters section that sends to an OTLP sink, and a service section opened with the
// collector's own telemetry off; the caller's pipelines follow.
func sinkBlock(url string) string {
	return fmt.Sprintf(`exporters:
  otlp_http:
    endpoint: %s
    compression: none
    retry_on_failure:
      enabled: false
service:
  telemetry:
    metrics:
      level: none
`, url)
}

// httpPost posts an OTLP protobuf body and returns the status.
func httpPost(url string, body []byte) (int, error) {
	resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// fetch GETs url and returns the status and body; status 0 when the request failed (not listening yet).
func fetch(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// handedOut holds every loopback port freePort and freePortRange have given this test process. A port is
// closed again before the collector that is to listen on it has started, so the kernel may offer it once more
// meanwhile; two collectors given one port is a test that fails for no reason of the code (it did once in CI:
// a sidecar and its gateway both given one port, started 20 ms apart).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a loopback address whose port is free now and has not been handed out before.
func freePort(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePortRange(t, 1))
}

// freePortRange returns the first of n consecutive loopback ports that are free now and none of which has
// been handed out before.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for try := 0; try < 100; try++ {
		first, _ := listenAndClose(t, 0)
		ok := !handedOut.ports[first]
		for p := first + 1; ok && p < first+n; p++ {
			_, free := listenAndClose(t, p)
			ok = free && !handedOut.ports[p]
		}
		if ok {
			for p := first; p < first+n; p++ {
				handedOut.ports[p] = true
			}
			return first
		}
	}
	t.Fatalf("no %d consecutive free loopback ports", n)
	return 0
}

// listenAndClose listens on the loopback port (0: one the kernel picks) and closes it again, returning the
// port and whether it could be listened on.
func listenAndClose(t *testing.T, port int) (int, bool) {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		if port == 0 {
			require.NoError(t, err)
		}
		return port, false
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, true
}

// The port helpers must not give one port twice, even though each port is closed before it is returned.
func TestFreePortsAreNeverGivenTwice(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 300; i++ {
		addr := freePort(t)
		require.False(t, seen[addr], "%s given twice", addr)
		seen[addr] = true
	}
	first := freePortRange(t, 3)
	for p := first; p < first+3; p++ {
		require.False(t, seen["127.0.0.1:"+strconv.Itoa(p)], "port %d of a range was given before", p)
	}
}
