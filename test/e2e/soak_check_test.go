package e2e

import (
	"bufio"
	endian "encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/datapoints"
	"github.com/servescope/servescope/internal/schema"
)

// What the soak reads back: the file exporter's output, the Prometheus exporter's page, the process's memory.

// soakHTTP reads the collector's pages; a collector that stopped answering fails the read, not the soak's clock.
var soakHTTP = &http.Client{Timeout: 30 * time.Second}

// deliveredSpan is what came out of the file exporter for one span id.
type deliveredSpan struct {
	count     int
	explained bool   // carries llm.root_cause (every time it came out)
	tenant    string // llm.tenant as the connector set it, kept only for late tenants and _other
}

// readFramedProto calls fn with each message of a file the file exporter wrote with format: proto (each
// message after its length, 4 bytes big-endian). A message cut short at the end (a process killed while
// writing) is reported, not read.
func readFramedProto(path string, fn func([]byte) error) (truncated bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // nothing was written
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var size [4]byte
	for {
		if _, err := io.ReadFull(r, size[:]); err != nil {
			return !errors.Is(err, io.EOF), nil
		}
		msg := make([]byte, endian.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(r, msg); err != nil {
			return true, nil
		}
		if err := fn(msg); err != nil {
			return false, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// readDeliveredSpans adds the spans of a traces file to delivered, by span id.
func readDeliveredSpans(path string, delivered map[pcommon.SpanID]*deliveredSpan) (bool, error) {
	var um ptrace.ProtoUnmarshaler
	return readFramedProto(path, func(msg []byte) error {
		td, err := um.UnmarshalTraces(msg)
		if err != nil {
			return err
		}
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					_, explained := sp.Attributes().Get(schema.AttrLLMRootCause)
					d := delivered[sp.SpanID()]
					if d == nil {
						d = &deliveredSpan{explained: true}
						delivered[sp.SpanID()] = d
					}
					d.count++
					d.explained = d.explained && explained
					if v, ok := sp.Attributes().Get(schema.AttrLLMTenant); ok {
						if t := v.AsString(); t == "_other" || strings.HasPrefix(t, soakLateTenantPrefix) {
							d.tenant = t
						}
					}
				}
			}
		}
		return nil
	})
}

// countLogRecords counts the log records of a logs file.
func countLogRecords(path string) (int, error) {
	var um plog.ProtoUnmarshaler
	n := 0
	_, err := readFramedProto(path, func(msg []byte) error {
		ld, err := um.UnmarshalLogs(msg)
		if err != nil {
			return err
		}
		n += ld.LogRecordCount()
		return nil
	})
	return n, err
}

// promFigures is what one scrape of a Prometheus page shows about its bounds.
type promFigures struct {
	series        int            // all series (a histogram's buckets, sum and count are one series)
	byFamily      map[string]int // series per metric family
	tenants       map[string]int // distinct llm_tenant values per family
	longestLabel  int            // bytes
	longestWhere  string         // the family and label of the longest value, and its first bytes
	unparseable   int            // lines the parser could not read
	insane        int            // llm_root_cause samples that no real traffic could make (see soakInsaneValue)
	insaneExample string
	pageBytes     int
	tenantSamples map[string]string // one tenant value (cut short) per family, for messages
}

// scrapePrometheus reads a Prometheus text page line by line, without keeping it: a page whose label values
// are unbounded could be very large.
func scrapePrometheus(url string) (promFigures, error) {
	resp, err := soakHTTP.Get(url)
	if err != nil {
		return promFigures{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return promFigures{}, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return parsePrometheusPage(resp.Body)
}

func parsePrometheusPage(body io.Reader) (promFigures, error) {
	fig := promFigures{byFamily: map[string]int{}, tenants: map[string]int{}, tenantSamples: map[string]string{}}
	histograms := map[string]bool{}
	seenSeries := map[uint64]bool{}
	seenTenant := map[string]map[uint64]bool{}
	r := bufio.NewReaderSize(body, 1<<20)
	for {
		line, err := r.ReadString('\n')
		fig.pageBytes += len(line)
		line = strings.TrimRight(line, "\n")
		if line != "" {
			if fields := strings.Fields(line); len(fields) >= 4 && fields[0] == "#" && fields[1] == "TYPE" {
				if fields[3] == "histogram" || fields[3] == "summary" {
					histograms[fields[2]] = true
				}
			} else if !strings.HasPrefix(line, "#") {
				name, labels, value, ok := parseSampleLine(line)
				if !ok {
					fig.unparseable++
				} else {
					family := name
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						if base, cut := strings.CutSuffix(name, suffix); cut && histograms[base] {
							family = base
						}
					}
					h := fnv.New64a()
					_, _ = h.Write([]byte(family))
					for _, l := range labels {
						if l[0] == "le" || l[0] == "quantile" {
							continue
						}
						_, _ = h.Write([]byte{0})
						_, _ = h.Write([]byte(l[0]))
						_, _ = h.Write([]byte{0})
						_, _ = h.Write([]byte(l[1]))
						if len(l[1]) > fig.longestLabel {
							fig.longestLabel = len(l[1])
							fig.longestWhere = fmt.Sprintf("%s{%s=%.40q...}", family, l[0], l[1])
						}
						if l[0] == "llm_tenant" {
							th := fnv.New64a()
							_, _ = th.Write([]byte(l[1]))
							if seenTenant[family] == nil {
								seenTenant[family] = map[uint64]bool{}
							}
							if !seenTenant[family][th.Sum64()] {
								seenTenant[family][th.Sum64()] = true
								fig.tenants[family]++
								fig.tenantSamples[family] = fmt.Sprintf("%.40s", l[1])
							}
						}
					}
					if scope := labelOf(labels, "otel_scope_name"); strings.HasSuffix(scope, "llmrootcauseconnector") &&
						!(math.Abs(value) < soakInsaneValue) {
						fig.insane++
						fig.insaneExample = fmt.Sprintf("%s = %g", family, value)
					}
					if key := h.Sum64(); !seenSeries[key] {
						seenSeries[key] = true
						fig.series++
						fig.byFamily[family]++
					}
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return fig, nil
		}
		if err != nil {
			return fig, err
		}
	}
}

// soakInsaneValue bounds every sample of llm_root_cause's metrics: the soak's real requests add up to far
// less (seconds and tokens of some 10^5 requests a minute), so a sample at or over it, or NaN, or infinite,
// came from a request number no engine reports (1e308 seconds, 2^63-1 tokens) that was not turned away.
const soakInsaneValue = 1e15

func labelOf(labels [][2]string, name string) string {
	for _, l := range labels {
		if l[0] == name {
			return l[1]
		}
	}
	return ""
}

// parseSampleLine splits `name{k="v",...} value [timestamp]` into the name and the label pairs, undoing
// the text format's escapes in values.
func parseSampleLine(line string) (string, [][2]string, float64, bool) {
	brace := strings.IndexAny(line, "{ ")
	if brace <= 0 {
		return "", nil, 0, false
	}
	name := line[:brace]
	if line[brace] == ' ' {
		v, ok := sampleValue(line[brace:])
		return name, nil, v, ok
	}
	var labels [][2]string
	i := brace + 1
	for i < len(line) && line[i] != '}' {
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 || i+eq+1 >= len(line) || line[i+eq+1] != '"' {
			return "", nil, 0, false
		}
		key := line[i : i+eq]
		i += eq + 2
		var v strings.Builder
		for ; i < len(line) && line[i] != '"'; i++ {
			if line[i] == '\\' && i+1 < len(line) {
				i++
				switch line[i] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(line[i])
				}
				continue
			}
			v.WriteByte(line[i])
		}
		if i >= len(line) {
			return "", nil, 0, false
		}
		i++ // the closing quote
		if i < len(line) && line[i] == ',' {
			i++
		}
		labels = append(labels, [2]string{key, v.String()})
	}
	if i >= len(line) {
		return "", nil, 0, false
	}
	v, ok := sampleValue(line[i+1:])
	return name, labels, v, ok
}

// sampleValue reads the value after a sample's name and labels (a timestamp may follow it).
func sampleValue(rest string) (float64, bool) {
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	return v, err == nil
}

// procPeakMemory reads a process's peak resident set (VmHWM) from /proc, in bytes.
func procPeakMemory(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || key != "VmHWM" {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		return kb << 10, nil
	}
	return 0, nil
}

// telemetryValue sums the samples of a metric on the collector's own telemetry page whose name starts with
// prefix (the Prometheus exporter may add a unit or _total suffix); ok is false when none is there.
func telemetryValue(url, prefix string) (float64, bool) {
	resp, err := soakHTTP.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, false
	}
	total, found := 0.0, false
	for _, line := range strings.Split(string(page), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			total += v
			found = true
		}
	}
	return total, found
}

// soakMetricsSink takes the connectors' metrics over OTLP/HTTP as they flush them and keeps only the worst
// it saw: the bounds of what the connectors export, exactly, batch by batch (the Prometheus page also holds
// series a connector stopped exporting, until the exporter's metric_expiration).
type soakMetricsSink struct {
	*httptest.Server
	mu                                 sync.Mutex
	batches, badBatches                int
	maxSeries, maxTenants, longestAttr int
	maxSeriesWhere, maxTenantsWhere    string
	longestWhere                       string
}

func newSoakMetricsSink(t *testing.T) *soakMetricsSink {
	s := &soakMetricsSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return // the collector went away mid-request (it crashed): that is reported elsewhere
		}
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(raw); err != nil {
			s.mu.Lock()
			s.badBatches++
			s.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.observe(req.Metrics())
		resp, _ := pmetricotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *soakMetricsSink) observe(md pmetric.Metrics) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	longest := func(where string, attrs pcommon.Map) {
		for k, v := range attrs.All() {
			if n := len(v.AsString()); n > s.longestAttr {
				s.longestAttr, s.longestWhere = n, fmt.Sprintf("%s %s=%.40q...", where, k, v.AsString())
			}
		}
	}
	for _, rm := range md.ResourceMetrics().All() {
		longest("resource", rm.Resource().Attributes())
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				series, tenants := 0, map[string]bool{}
				datapoints.EachAttributes(m, func(attrs pcommon.Map) {
					series++
					if v, ok := attrs.Get(schema.AttrLLMTenant); ok {
						tenants[v.AsString()] = true
					}
					longest(m.Name(), attrs)
				})
				where := sm.Scope().Name() + " " + m.Name()
				if series > s.maxSeries && strings.HasSuffix(sm.Scope().Name(), "llmrootcauseconnector") {
					s.maxSeries, s.maxSeriesWhere = series, where
				}
				if len(tenants) > s.maxTenants {
					s.maxTenants, s.maxTenantsWhere = len(tenants), where
				}
			}
		}
	}
}
