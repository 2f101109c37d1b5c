package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// The soak (issue 15): the built collector under misbehaving engines and hostile span senders, restarted
// once in the middle, must lose no accepted span, deliver none twice, keep explaining, stay within its
// bounds and exit cleanly.
//
//	make build && SERVESCOPE_BIN=$PWD/bin/otelcol-servescope go test -count=1 -run TestSoak ./test/e2e/
//	... -timeout 40m -run TestSoak ./test/e2e/ -soak=30m   (or SERVESCOPE_SOAK=30m; SERVESCOPE_SOAK_SEED=n;
//	SERVESCOPE_SOAK_EXTREMES=nan,huge_labels or none, to tell which input a failure comes from)

var soakFlag = flag.Duration("soak", 0, "how long TestSoak sends (default 2m; SERVESCOPE_SOAK sets it too)")

const (
	soakDefaultDuration = 2 * time.Minute
	soakDefaultSeed     = 15
	soakSenders         = 3
	soakSendEvery       = 150 * time.Millisecond // per sender: about 400 spans a second in all

	// The bounds the collector runs under, and what the soak holds it to.
	soakMaxTenants        = 50
	soakMaxSeries         = 400
	soakMaxLabelBytes     = 1024 // any sensible cap on label values is below this
	soakMaxRSS            = 400 << 20
	soakMaxWait           = 3 * time.Second
	soakShutdownTimeout   = 15 * time.Second
	soakCollectionPeriod  = time.Second
	soakMetricsFlushEvery = time.Second
)

func soakSettings(t *testing.T) (time.Duration, int64) {
	d := soakDefaultDuration
	if env := os.Getenv("SERVESCOPE_SOAK"); env != "" {
		v, err := time.ParseDuration(env)
		require.NoError(t, err, "SERVESCOPE_SOAK must be a duration such as 30m")
		d = v
	}
	if *soakFlag > 0 {
		d = *soakFlag
	}
	require.GreaterOrEqual(t, d, 30*time.Second, "a soak shorter than 30s sees too few engine misbehaviours")
	seed := int64(soakDefaultSeed)
	if env := os.Getenv("SERVESCOPE_SOAK_SEED"); env != "" {
		v, err := strconv.ParseInt(env, 10, 64)
		require.NoError(t, err, "SERVESCOPE_SOAK_SEED must be an integer")
		seed = v
	}
	return d, seed
}

// soakConfig: the engines through llm_normalize into llm_root_cause and llm_signals; request spans over
// OTLP into llm_root_cause; explained spans and slow-request logs to files (one per run), every metric to
// the Prometheus exporter. The collector's own telemetry is served for the spans waiting in the connector.
func soakConfig(engines []*soakEngine, otlpAddr, promAddr, telemetryAddr, metricsSink, tracesPath, logsPath string) string {
	var receivers strings.Builder
	var names []string
	for _, e := range engines {
		fmt.Fprintf(&receivers, "  vllm/%s:\n    endpoint: %s\n    collection_interval: %s\n", e.behaviour, e.url(), soakCollectionPeriod)
		names = append(names, "vllm/"+e.behaviour)
	}
	host, port, _ := strings.Cut(telemetryAddr, ":")
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
%sprocessors:
  llm_normalize: {}
connectors:
  llm_root_cause:
    max_wait: %s
    metrics_flush_interval: %s
    max_tenants: %d
    max_prompt_families: 20
    max_models: 20
    max_series: %d
    request_id_cache: 4096
    slo:
      default:
        ttft: 1s
  llm_signals:
    interval: 1s
    stale: 5s
    max_tenants: %d
exporters:
  file/traces:
    path: %s
    format: proto
  file/logs:
    path: %s
    format: proto
  prometheus:
    endpoint: %s
    # A series a connector stops exporting (a tenant that lost its slot) leaves the page this long after.
    metric_expiration: 5s
  otlp_http/connectors:
    metrics_endpoint: %s/v1/metrics
    compression: none
    retry_on_failure:
      enabled: false
service:
  telemetry:
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: %s
                port: %s
  pipelines:
    metrics/engines:
      receivers: [%s]
      processors: [llm_normalize]
      exporters: [llm_root_cause, llm_signals, prometheus]
    traces:
      receivers: [otlp]
      exporters: [llm_root_cause]
    traces/explained:
      receivers: [llm_root_cause]
      exporters: [file/traces]
    metrics/explained:
      receivers: [llm_root_cause]
      exporters: [prometheus, llm_signals, otlp_http/connectors]
    logs/explained:
      receivers: [llm_root_cause]
      exporters: [file/logs]
    metrics/signals:
      receivers: [llm_signals]
      exporters: [prometheus, otlp_http/connectors]
    logs/incidents:
      receivers: [llm_signals]
      exporters: [file/logs]
`, otlpAddr, receivers.String(), soakMaxWait, soakMetricsFlushEvery, soakMaxTenants, soakMaxSeries, soakMaxTenants,
		tracesPath, logsPath, promAddr, metricsSink, host, port, strings.Join(names, ", "))
}

// soakRun is one collector process of the soak.
type soakRun struct {
	n                  int
	c                  *collector
	tracesPath         string
	logsPath           string
	peakRSS            int64
	waitingAtSIGTERM   float64
	waitingKnown       bool
	shutdown           time.Duration
	exit               error
	exitedCleanly      bool
	diedEarly          bool // exited before the soak sent SIGTERM
	stopping, readyAt  time.Time
	truncatedTraceFile bool
}

func TestSoak(t *testing.T) {
	if os.Getenv("SERVESCOPE_BIN") == "" {
		t.Skip("the soak runs the built collector: make build, then SERVESCOPE_BIN=$PWD/bin/otelcol-servescope go test -run TestSoak ./test/e2e/")
	}
	if testing.Short() {
		t.Skip("the soak takes minutes; not with -short")
	}
	t.Parallel()
	duration, seed := soakSettings(t)
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < duration+2*time.Minute {
		t.Fatalf("a %s soak needs a go test -timeout of at least %s more than that; %s are left", duration, 2*time.Minute, time.Until(deadline).Round(time.Second))
	}
	t.Logf("soak: %s of sending, seed %d (SERVESCOPE_SOAK_SEED), collector restarted at %s", duration, seed, duration/2)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	engines, stopEngines, err := startSoakEngines(ctx)
	require.NoError(t, err)
	t.Cleanup(stopEngines)
	instances := make([]string, len(engines))
	for i, e := range engines {
		instances[i] = e.addr
	}

	otlpAddr, promAddr, telemetryAddr := freePort(t), freePort(t), freePort(t)
	exported := newSoakMetricsSink(t)
	dir := t.TempDir()
	var runsMu sync.Mutex
	var runs []*soakRun
	current := func() *soakRun {
		runsMu.Lock()
		defer runsMu.Unlock()
		return runs[len(runs)-1]
	}
	start := func() {
		n := len(runs) + 1
		r := &soakRun{n: n, tracesPath: filepath.Join(dir, fmt.Sprintf("traces-%d.pb", n)), logsPath: filepath.Join(dir, fmt.Sprintf("logs-%d.pb", n))}
		r.c = startCollector(t, soakConfig(engines, otlpAddr, promAddr, telemetryAddr, exported.URL, r.tracesPath, r.logsPath))
		waitSoakReady(t, r, otlpAddr)
		r.readyAt = time.Now()
		runsMu.Lock()
		runs = append(runs, r)
		runsMu.Unlock()
	}
	start()

	// The senders and the sampler stop before the collector does (cleanups run last-registered first).
	extremes, err := selectSoakExtremes(os.Getenv("SERVESCOPE_SOAK_EXTREMES"))
	require.NoError(t, err)
	ledger := newSpanLedger()
	sendCtx, stopSending := context.WithCancel(ctx)
	var senders sync.WaitGroup
	began := time.Now()
	lateFrom := began.Add(duration * 7 / 10) // in the second run, well after its slots were taken
	for i := range soakSenders {
		s := newSpanSender(i, seed, otlpAddr, instances, extremes, lateFrom, duration, ledger)
		senders.Add(1)
		go func() { defer senders.Done(); s.run(sendCtx, soakSendEvery) }()
	}
	t.Cleanup(func() { stopSending(); senders.Wait() })

	samples := newSoakSampler(promAddr)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		samples.run(sampleCtx, func() (int, int) { r := current(); return r.n, r.c.cmd.Process.Pid })
	}()
	t.Cleanup(func() { stopSampling(); sampler.Wait() })

	sleepCtx(ctx, duration/2)
	stopSoakRun(t, current(), telemetryAddr, samples)
	restartedAt := current().stopping
	start()
	sleepCtx(ctx, duration-time.Since(began))
	stopSending()
	senders.Wait()

	// Let the held spans go (max_wait) and the connectors flush, then read the page one last time.
	time.Sleep(soakMaxWait + 2*soakMetricsFlushEvery)
	samples.scrape()
	stopSampling()
	sampler.Wait()
	stopSoakRun(t, current(), telemetryAddr, samples)

	// Read everything back.
	delivered := map[pcommon.SpanID]*deliveredSpan{}
	logRecords, outputBytes := 0, int64(0)
	for _, r := range runs {
		truncated, err := readDeliveredSpans(r.tracesPath, delivered)
		require.NoError(t, err)
		r.truncatedTraceFile = truncated
		n, err := countLogRecords(r.logsPath)
		require.NoError(t, err)
		logRecords += n
		if info, err := os.Stat(r.tracesPath); err == nil {
			outputBytes += info.Size()
		}
	}
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for _, r := range runs {
		r.peakRSS = samples.peakRSS[r.n]
	}
	f := tallySoak(ledger, delivered, began.Add(duration-soakLateJudged))

	// The figures first, so a failing soak still says what it saw.
	t.Logf("spans: %d sent, %d accepted, %d delivered (%d deliveries); well-formed: %d sent, %d accepted; request spans accepted after the first extreme one: %d",
		f.sent, f.accepted, f.deliveredIDs, f.deliveries, f.wellSent, f.wellAccepted, f.afterExtreme)
	t.Logf("extremes: %d sent (%s), %d accepted, %d delivered: %d explained, %d unexplained", f.extremeSent, extremeKinds(ledger.extremesSent),
		f.extremeAccepted, f.extremeDelivered, f.extremeExplained, f.extremeDelivered-f.extremeExplained)
	t.Logf("posts: %d accepted, %d refused (collector restarting), %d partially rejected, %d failed otherwise", ledger.posts.accepted,
		ledger.posts.refused, ledger.posts.partial, len(ledger.posts.failed))
	t.Logf("late busy tenants: %d requests delivered from the last %s, %d under their own name, %d folded into _other",
		f.lateJudged, soakLateJudged, f.lateOwnName, f.lateFolded)
	t.Logf("log records (slow requests, incidents): %d; explained spans written: %.0f MiB", logRecords, float64(outputBytes)/(1<<20))
	for _, r := range runs {
		t.Logf("collector run %d: peak RSS %.0f MiB, %s spans waiting in llm_root_cause at SIGTERM, exit after %s: %v",
			r.n, float64(r.peakRSS)/(1<<20), waitingFigure(r), r.shutdown.Round(time.Millisecond), exitFigure(r))
	}
	t.Logf("collector restarts: %d; engines: %s", len(runs)-1, engineFigures(engines))
	exported.mu.Lock()
	defer exported.mu.Unlock()
	t.Logf("connectors' metrics, worst over %d exported batches: %d series in one llm_root_cause metric (%s), %d tenants in one metric (%s), longest attribute value %d bytes (%s)",
		exported.batches, exported.maxSeries, exported.maxSeriesWhere, exported.maxTenants, exported.maxTenantsWhere, exported.longestAttr, exported.longestWhere)
	t.Logf("prometheus page, worst over %d scrapes: %d series, %d in one family (%s), %d tenants in one family, longest label value %d bytes (%s), largest page %.1f MiB",
		samples.scrapes, samples.maxSeries, samples.maxFamilySeries, samples.maxFamilyName, samples.maxTenants, samples.longestLabel, samples.longestWhere,
		float64(samples.maxPageBytes)/(1<<20))

	// Nothing accepted is lost or doubled; every well-formed request comes out explained.
	assert.Positive(t, f.wellAccepted, "the collector accepted spans")
	assert.Zero(t, len(f.lostWellFormed), "well-formed spans accepted (HTTP 200) but never delivered: %d of %d (first: %v)",
		len(f.lostWellFormed), f.wellAccepted, firstIDs(f.lostWellFormed))
	assert.Zero(t, len(f.lostExtreme), "spans with extremes accepted but never delivered, lost silently, by kind: %v", f.lostExtremeKinds)
	assert.Zero(t, len(f.duplicated), "spans delivered more than once (first: %v)", firstIDs(f.duplicated))
	assert.Zero(t, len(f.unknown), "spans delivered that no sender sent")
	assert.Zero(t, len(f.unexplained), "well-formed request spans delivered without llm.root_cause (first: %v)", firstIDs(f.unexplained))
	if f.extremeSent > 0 {
		assert.Positive(t, f.afterExtreme, "well-formed requests were accepted after the first extreme one")
	}
	for _, r := range runs {
		assert.False(t, r.truncatedTraceFile, "run %d's traces file ends in a cut message: the exporter did not finish", r.n)
	}
	// Tenant slots go to the busiest recent tenants, not to the first ones seen.
	assert.Positive(t, f.lateJudged, "late tenants' requests were delivered")
	assert.Equal(t, f.lateJudged, f.lateOwnName, "late busy tenants' requests from the last %s carry their own llm.tenant (%d carry _other)",
		soakLateJudged, f.lateFolded)
	// The collector kept answering: apart from the restart, every post got an answer.
	var failedOutside []postFailure
	for _, p := range ledger.posts.failed {
		if p.at.Before(restartedAt) || p.at.After(runs[1].readyAt) {
			failedOutside = append(failedOutside, p)
		}
	}
	assert.Zero(t, len(failedOutside), "posts that failed while the collector was up (first: %v)", firstFailures(failedOutside))
	assert.Zero(t, ledger.posts.partial, "posts with spans rejected")

	// The process stayed alive and stopped cleanly, both times.
	for _, r := range runs {
		assert.True(t, r.exitedCleanly, "run %d: exit 0 within %s of SIGTERM, got %v", r.n, soakShutdownTimeout, exitFigure(r))
		assert.False(t, r.diedEarly, "run %d: the collector exited before SIGTERM", r.n)
		if loc := panicLine.FindStringIndex(r.c.output.String()); loc != nil {
			t.Errorf("run %d: a panic in the collector's output:\n%s", r.n, excerpt(r.c.output.String()[loc[0]:], 3000))
		}
		assert.True(t, r.waitingKnown, "run %d: the collector's telemetry reports the spans waiting in llm_root_cause", r.n)
		if r.n < len(runs) {
			// The restart must catch spans waiting for state, or it says nothing about the shutdown flush.
			assert.Positive(t, r.waitingAtSIGTERM, "run %d: spans were waiting in llm_root_cause at SIGTERM", r.n)
		}
		assert.LessOrEqual(t, r.peakRSS, int64(soakMaxRSS), "run %d: peak RSS %d MiB over %d MiB", r.n, r.peakRSS>>20, soakMaxRSS>>20)
	}

	// Within bounds: what the connectors export, at every flush...
	assert.Positive(t, exported.batches, "the connectors exported metrics")
	assert.Zero(t, exported.badBatches, "exported metric batches that are not OTLP")
	assert.LessOrEqual(t, exported.maxTenants, soakMaxTenants+2, "tenants in %s: at most max_tenants + _other + unknown", exported.maxTenantsWhere)
	assert.LessOrEqual(t, exported.maxSeries, soakMaxSeries+1, "series in %s: at most max_series + the overflow series", exported.maxSeriesWhere)
	assert.LessOrEqual(t, exported.longestAttr, soakMaxLabelBytes, "attribute value of %d bytes: %s", exported.longestAttr, exported.longestWhere)
	// ...and on the Prometheus page, at every scrape. The page also holds, for metric_expiration, the series of
	// a tenant that just lost its slot to a busier one: twice the bound says it is bounded all the same.
	assert.Positive(t, samples.scrapes, "the Prometheus page was scraped")
	assert.Zero(t, samples.scrapeErrors, "scrapes of the Prometheus page failed: %v", samples.lastError)
	assert.LessOrEqual(t, samples.maxTenants, 2*(soakMaxTenants+2), "tenants in one family on the page (%s)", samples.maxTenantsFamily)
	assert.LessOrEqual(t, samples.maxFamilySeries, 2*(soakMaxSeries+1), "series in %s on the page", samples.maxFamilyName)
	assert.LessOrEqual(t, samples.longestLabel, soakMaxLabelBytes, "label value of %d bytes: %s", samples.longestLabel, samples.longestWhere)
	assert.Zero(t, samples.unparseable, "lines of the Prometheus page that are not Prometheus text")
	assert.Zero(t, samples.insane, "llm_root_cause samples no request could make (NaN, infinite or over %g), e.g. %s", soakInsaneValue, samples.insaneExample)
}

// waitSoakReady waits until the collector takes OTLP (an empty batch answers 200) and serves its page.
func waitSoakReady(t *testing.T, r *soakRun, otlpAddr string) {
	t.Helper()
	empty, err := ptraceotlp.NewExportRequestFromTraces(ptrace.NewTraces()).MarshalProto()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		select {
		case err := <-r.c.done:
			r.c.done <- err
			return true // exited: reported below
		default:
		}
		status, err := httpPost("http://"+otlpAddr+"/v1/traces", empty)
		return err == nil && status == 200
	}, 30*time.Second, 100*time.Millisecond, "collector run %d takes OTLP", r.n)
	select {
	case err := <-r.c.done:
		r.c.done <- err
		out := r.c.output.String()
		hint := ""
		if strings.Contains(out, "address already in use") {
			hint = " (a port of the first run was taken in between by another process)"
		}
		require.FailNow(t, fmt.Sprintf("collector run %d exited at start: %v%s", r.n, err, hint))
	default:
	}
}

// stopSoakRun reads the spans waiting in the connector and the peak RSS, sends SIGTERM and waits for the
// exit, killing the process if it does not exit in time.
func stopSoakRun(t *testing.T, r *soakRun, telemetryAddr string, samples *soakSampler) {
	t.Helper()
	r.waitingAtSIGTERM, r.waitingKnown = telemetryValue("http://"+telemetryAddr+"/metrics", "otelcol_llm_root_cause_waiting_spans")
	if peak, err := procPeakMemory(r.c.cmd.Process.Pid); err == nil {
		samples.notePeak(r.n, peak)
	}
	select {
	case err := <-r.c.done:
		r.c.done <- err
		r.diedEarly = true
	default:
	}
	r.stopping = time.Now()
	_ = r.c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case r.exit = <-r.c.done:
		r.exitedCleanly = r.exit == nil && !r.diedEarly
	case <-time.After(soakShutdownTimeout):
		// SIGQUIT first: the Go runtime prints every goroutine's stack, which shows where it is stuck.
		_ = r.c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-r.c.done:
		case <-time.After(3 * time.Second):
			_ = r.c.cmd.Process.Kill()
			<-r.c.done
		}
		r.exit = fmt.Errorf("still running %s after SIGTERM; its goroutines are in the output (SIGQUIT)", soakShutdownTimeout)
	}
	r.shutdown = time.Since(r.stopping)
}

// panicLine finds a panic in a collector's output: one that killed it (the runtime's "panic: "), one the
// HTTP server recovered from (which can leave a lock held), or one a component recovered from and logged
// (a zap field named panic): each is a bug an input reached, even when the process lived on.
var panicLine = regexp.MustCompile(`(?m)^panic: |http: panic serving|fatal error: |recovered from a panic|"panic": `)

// excerpt returns up to n bytes of s.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// soakSampler scrapes the Prometheus page and keeps the worst it saw.
type soakSampler struct {
	url                                                  string
	scrapes, scrapeErrors                                int
	lastError                                            error
	maxSeries, maxFamilySeries, maxTenants, longestLabel int
	maxFamilyName, maxTenantsFamily, longestWhere        string
	unparseable, maxPageBytes, insane                    int
	insaneExample                                        string
	peakRSS                                              map[int]int64 // by collector run
	mu                                                   sync.Mutex
}

func newSoakSampler(promAddr string) *soakSampler {
	return &soakSampler{url: "http://" + promAddr + "/metrics", peakRSS: map[int]int64{}}
}

// run scrapes the page every 10 s and reads the running collector's peak RSS every second (a collector
// that dies has no /proc entry left to read at the end).
func (s *soakSampler) run(ctx context.Context, current func() (int, int)) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		run, pid := current()
		if peak, err := procPeakMemory(pid); err == nil {
			s.notePeak(run, peak)
		}
		if i%10 == 0 {
			s.scrape()
		}
	}
}

func (s *soakSampler) notePeak(run int, peak int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peakRSS[run] = max(s.peakRSS[run], peak)
}

func (s *soakSampler) scrape() {
	fig, err := scrapePrometheus(s.url)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// The page is down while the collector restarts: not a failure of the page.
		if !strings.Contains(err.Error(), "connection refused") {
			s.scrapeErrors++
			s.lastError = err
		}
		return
	}
	s.scrapes++
	s.maxSeries = max(s.maxSeries, fig.series)
	s.unparseable += fig.unparseable
	s.insane += fig.insane
	if fig.insaneExample != "" {
		s.insaneExample = fig.insaneExample
	}
	s.maxPageBytes = max(s.maxPageBytes, fig.pageBytes)
	for family, n := range fig.byFamily {
		if n > s.maxFamilySeries {
			s.maxFamilySeries, s.maxFamilyName = n, family
		}
	}
	for family, n := range fig.tenants {
		if n > s.maxTenants {
			s.maxTenants, s.maxTenantsFamily = n, family
		}
	}
	if fig.longestLabel > s.longestLabel {
		s.longestLabel, s.longestWhere = fig.longestLabel, fig.longestWhere
	}
}

// soakTally is the ledger set against what came out.
type soakTally struct {
	sent, accepted, deliveredIDs, deliveries, wellSent, wellAccepted, afterExtreme int
	extremeSent, extremeAccepted, extremeDelivered, extremeExplained               int
	lostWellFormed, lostExtreme, duplicated, unknown, unexplained                  []pcommon.SpanID
	lostExtremeKinds                                                               map[string]int
	lateJudged, lateOwnName, lateFolded                                            int
}

// soakLateJudged: the late tenants' requests sent this close to the end must be under their own name (by
// then each has sent hundreds of requests; the one-off tenants that hold slots have sent one each).
const soakLateJudged = 10 * time.Second

func tallySoak(l *spanLedger, delivered map[pcommon.SpanID]*deliveredSpan, judgeLateFrom time.Time) soakTally {
	f := soakTally{lostExtremeKinds: map[string]int{}, deliveredIDs: len(delivered), afterExtreme: l.acceptedAfterExtreme}
	for id, d := range delivered {
		f.deliveries += d.count
		if d.count > 1 {
			f.duplicated = append(f.duplicated, id)
		}
		if l.spans[id] == nil {
			f.unknown = append(f.unknown, id)
		}
	}
	for id, s := range l.spans {
		f.sent++
		if s.extreme == "" {
			f.wellSent++
		} else {
			f.extremeSent++
		}
		if !s.accepted {
			continue
		}
		f.accepted++
		d := delivered[id]
		if s.extreme == "" {
			f.wellAccepted++
			if d != nil && s.lateTenant != "" && s.sentAt.After(judgeLateFrom) {
				f.lateJudged++
				switch d.tenant {
				case s.lateTenant:
					f.lateOwnName++
				case "_other":
					f.lateFolded++
				}
			}
			switch {
			case d == nil:
				f.lostWellFormed = append(f.lostWellFormed, id)
			case s.request && !d.explained:
				f.unexplained = append(f.unexplained, id)
			}
			continue
		}
		f.extremeAccepted++
		if d == nil {
			f.lostExtreme = append(f.lostExtreme, id)
			f.lostExtremeKinds[s.extreme]++
			continue
		}
		f.extremeDelivered++
		if d.explained {
			f.extremeExplained++
		}
	}
	slices.SortFunc(f.lostWellFormed, compareSpanIDs)
	slices.SortFunc(f.duplicated, compareSpanIDs)
	slices.SortFunc(f.unexplained, compareSpanIDs)
	return f
}

func compareSpanIDs(a, b pcommon.SpanID) int { return bytes.Compare(a[:], b[:]) }

func firstIDs(ids []pcommon.SpanID) []string {
	var out []string
	for _, id := range ids[:min(3, len(ids))] {
		out = append(out, id.String())
	}
	return out
}

func firstFailures(fs []postFailure) []string {
	var out []string
	for _, f := range fs[:min(3, len(fs))] {
		out = append(out, f.at.Format("15:04:05.000")+" "+f.err)
	}
	return out
}

func extremeKinds(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func waitingFigure(r *soakRun) string {
	if !r.waitingKnown {
		return "unknown"
	}
	return strconv.FormatFloat(r.waitingAtSIGTERM, 'f', 0, 64)
}

func exitFigure(r *soakRun) string {
	switch {
	case r.diedEarly:
		return fmt.Sprintf("exited before SIGTERM: %v", r.exit)
	case r.exitedCleanly:
		return "exit 0"
	}
	return fmt.Sprint(r.exit)
}

func engineFigures(engines []*soakEngine) string {
	var parts []string
	for _, e := range engines {
		e.mu.Lock()
		parts = append(parts, fmt.Sprintf("%s (%d scrapes, %d restarts, %d outages, %d flips, %d garbage pages)",
			e.behaviour, e.scrapes, e.restarts, e.outages, e.flips, e.garbageServed))
		e.mu.Unlock()
	}
	return strings.Join(parts, "; ")
}
