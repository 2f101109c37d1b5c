package ncclreceiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/servescope/servescope/internal/promtext"
)

// op is one NCCL collective or point-to-point operation on one rank, from one Inspector JSON record.
//
// The Inspector (NCCL plugins/profiler/inspector, output format "v4.0" in NCCL 2.28.3 through 2.30.x)
// writes one compact JSON object per line: a "header" describing the communicator and this process' rank
// in it, a "metadata" object (host, pid, dump time), and either "coll_perf" (collectives) or, from NCCL
// 2.30, "p2p_perf" (Send/Recv). With NCCL_INSPECTOR_DUMP_VERBOSE=1 the perf object also carries
// "event_trace_ts" with host wall-clock timestamps (µs) of the operation's start and of each kernel
// channel's start, which is what makes arrival skew measurable from start times.
type op struct {
	commID   string
	commName string
	rank     int
	nranks   int
	host     string
	pid      int64

	name     string // AllReduce, Send, ...
	p2p      bool
	peer     int // -1 unless p2p
	seq      uint64
	msgBytes uint64
	execUs   float64
	timing   string  // kernel_gpu, kernel_cpu, collective_cpu ("" when the record predates the field)
	algoGBs  float64 // NaN when absent
	busGBs   float64 // NaN when absent
	startUs  uint64  // host wall clock when this rank reached the operation; 0 without verbose records
}

// communicator is how the receiver names a communicator to users: NCCL's name for it where it has one,
// else the hash the Inspector prints (the same on every rank, so it still joins ranks).
func (o *op) communicator() string {
	if o.commName != "" && o.commName != "unknown" {
		return o.commName
	}
	return o.commID
}

// flexFloat reads a JSON number, or the strings the Inspector prints for a non-finite double ("nan"),
// as NaN: a missing bandwidth, not a broken record.
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*f = flexFloat(math.NaN())
		return nil
	}
	if string(b) == "null" {
		*f = flexFloat(math.NaN())
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("not a number: %.20s", b)
	}
	*f = flexFloat(v)
	return nil
}

type wireKernel struct {
	StartTS uint64 `json:"kernel_start_ts"`
}

type wireTrace struct {
	CollStart uint64       `json:"coll_start_ts"`
	P2PStart  uint64       `json:"p2p_start_ts"`
	Kernels   []wireKernel `json:"kernel_events"`
}

type wirePerf struct {
	Coll       *string    `json:"coll"`
	CollSN     uint64     `json:"coll_sn"`
	CollBytes  uint64     `json:"coll_msg_size_bytes"`
	CollExecUs *float64   `json:"coll_exec_time_us"`
	CollTiming string     `json:"coll_timing_source"`
	CollAlgoBW *flexFloat `json:"coll_algobw_gbs"`
	CollBusBW  *flexFloat `json:"coll_busbw_gbs"`

	P2P       *string    `json:"p2p"`
	P2PSN     uint64     `json:"p2p_sn"`
	P2PPeer   *int       `json:"p2p_peer"`
	P2PBytes  uint64     `json:"p2p_msg_size_bytes"`
	P2PExecUs *float64   `json:"p2p_exec_time_us"`
	P2PTiming string     `json:"p2p_timing_source"`
	P2PAlgoBW *flexFloat `json:"p2p_algobw_gbs"`
	P2PBusBW  *flexFloat `json:"p2p_busbw_gbs"`

	Trace *wireTrace `json:"event_trace_ts"`
}

type wireRecord struct {
	Header *struct {
		ID       string `json:"id"`
		CommName string `json:"comm_name"`
		Rank     *int   `json:"rank"`
		NRanks   *int   `json:"n_ranks"`
	} `json:"header"`
	Metadata struct {
		Hostname string `json:"hostname"`
		PID      int64  `json:"pid"`
	} `json:"metadata"`
	Coll *wirePerf `json:"coll_perf"`
	P2P  *wirePerf `json:"p2p_perf"`
}

// maxRanks bounds what a record may claim, so that a corrupt rank count cannot size anything.
const maxRanks = 1 << 20

// parseRecord reads one line of an Inspector JSON file. A line that is not a complete, sensible record is an
// error; the caller skips it.
func parseRecord(line []byte) (op, error) {
	var w wireRecord
	if err := json.Unmarshal(line, &w); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return op{}, fmt.Errorf("not JSON (cut off or corrupted) at byte %d", syntax.Offset)
		}
		return op{}, fmt.Errorf("unexpected JSON shape: %w", err)
	}
	h := w.Header
	if h == nil || h.ID == "" || h.Rank == nil || h.NRanks == nil {
		return op{}, errors.New("no header with id, rank and n_ranks")
	}
	if *h.NRanks < 1 || *h.NRanks > maxRanks || *h.Rank < 0 || *h.Rank >= *h.NRanks {
		return op{}, fmt.Errorf("rank %d of %d is impossible", *h.Rank, *h.NRanks)
	}
	o := op{
		commID: h.ID, commName: h.CommName, rank: *h.Rank, nranks: *h.NRanks,
		host: w.Metadata.Hostname, pid: w.Metadata.PID, peer: -1,
	}
	var exec *float64
	var algo, bus *flexFloat
	var start uint64
	switch {
	case w.Coll != nil && w.Coll.Coll != nil:
		p := w.Coll
		o.name, o.seq, o.msgBytes, exec, o.timing, algo, bus = *p.Coll, p.CollSN, p.CollBytes, p.CollExecUs, p.CollTiming, p.CollAlgoBW, p.CollBusBW
		if p.Trace != nil {
			start = p.Trace.CollStart
		}
	case w.P2P != nil && w.P2P.P2P != nil:
		p := w.P2P
		o.name, o.p2p, o.seq, o.msgBytes, exec, o.timing, algo, bus = *p.P2P, true, p.P2PSN, p.P2PBytes, p.P2PExecUs, p.P2PTiming, p.P2PAlgoBW, p.P2PBusBW
		if p.P2PPeer != nil {
			o.peer = *p.P2PPeer
		}
		if p.Trace != nil {
			start = p.Trace.P2PStart
		}
	default:
		return op{}, errors.New("neither coll_perf nor p2p_perf")
	}
	if o.name == "" || len(o.name) > 64 {
		return op{}, errors.New("no operation name")
	}
	if exec == nil || *exec < 0 || math.IsNaN(*exec) || math.IsInf(*exec, 0) {
		return op{}, errors.New("no usable execution time")
	}
	o.execUs = *exec
	o.algoGBs, o.busGBs = math.NaN(), math.NaN()
	if algo != nil {
		o.algoGBs = float64(*algo)
	}
	if bus != nil {
		o.busGBs = float64(*bus)
	}
	// The first kernel channel to start is when this rank's GPU reached the collective; the host-side
	// start (enqueue) is the fallback, since without kernel events it is the best arrival time there is.
	var tr *wireTrace
	if w.Coll != nil && w.Coll.Coll != nil {
		tr = w.Coll.Trace
	} else if w.P2P != nil {
		tr = w.P2P.Trace
	}
	if tr != nil {
		for _, k := range tr.Kernels {
			if k.StartTS != 0 && (o.startUs == 0 || k.StartTS < o.startUs) {
				o.startUs = k.StartTS
			}
		}
	}
	if o.startUs == 0 {
		o.startUs = start
	}
	return o, nil
}

// sizeBucket names the power-of-two range holding n bytes ("8MiB-16MiB"). Power-of-two ranges keep the
// label set small (a few dozen values) and contain every range of the Inspector's own Prometheus mode
// ([k, k+1) units), so records from both modes land in the same buckets.
func sizeBucket(n uint64) string {
	if n == 0 {
		return "0B"
	}
	k := bits.Len64(n) - 1
	if k >= 63 {
		return humanBytes(1<<63) + "+"
	}
	return humanBytes(1<<k) + "-" + humanBytes(1<<(k+1))
}

func humanBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	u := 0
	for n >= 1024 && n%1024 == 0 && u < len(units)-1 {
		n /= 1024
		u++
	}
	return strconv.FormatUint(n, 10) + units[u]
}

// promPoint is one sample of the Inspector's Prometheus textfile mode.
type promPoint struct {
	metric    string // bus_bandwidth, algo_bandwidth, exec_time
	p2p       bool
	name      string
	comm      string
	node      string
	nranks    int
	rank      int // -1: the aggregated format (NCCL 2.30+) has no rank
	algoProto string
	msgBytes  uint64 // lower bound of the Inspector's size range
	value     float64
}

var promMetrics = map[string]struct {
	metric string
	p2p    bool
}{
	"nccl_bus_bandwidth_gbs":                 {"bus_bandwidth", false},
	"nccl_algorithm_bandwidth_gbs":           {"algo_bandwidth", false},
	"nccl_collective_exec_time_microseconds": {"exec_time", false},
	"nccl_p2p_bus_bandwidth_gbs":             {"bus_bandwidth", true},
	"nccl_p2p_exec_time_microseconds":        {"exec_time", true},
}

// promUUID is the device UUID the Inspector puts in its textfile names (nccl_inspector_metrics_<uuid>.prom).
var promUUID = regexp.MustCompile(`^nccl_inspector_metrics_([0-9a-fA-F-]{36})\.prom$`)

// gpuFromPromFile returns NVML's spelling of the device UUID (GPU-<uuid>) from a textfile's name, or "".
func gpuFromPromFile(path string) string {
	m := promUUID.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return ""
	}
	return "GPU-" + strings.ToLower(m[1])
}

// parsePromFile reads one Inspector textfile. Two label layouts exist: NCCL 2.30 writes per-window
// aggregates labelled node, gpu, comm_name, nranks, collective|p2p_operation, message_size ("4-5GB"),
// algo_proto; NCCL 2.29 wrote one line per sampled collective labelled hostname, rank, comm_id, nranks,
// collective, coll_sn, message_size ("2.00GB"). Both are read. The second result counts skipped lines, the
// third describes the first of them.
func parsePromFile(body []byte) ([]promPoint, int, string) {
	res := promtext.Parse(body)
	bad := res.ErrorCount
	first := ""
	if len(res.Errors) > 0 {
		first = res.Errors[0].Error()
	}
	// A series written twice (the Inspector appends a dump to the file between rewrites) counts once, with
	// its latest value.
	latest := map[string]int{}
	var out []promPoint
	for _, f := range res.Families {
		for _, s := range f.Samples {
			kind, ok := promMetrics[s.Name]
			if !ok {
				continue
			}
			p := promPoint{metric: kind.metric, p2p: kind.p2p, rank: -1, value: s.Value}
			var size string
			for _, l := range s.Labels {
				switch l.Name {
				case "collective", "p2p_operation":
					p.name = l.Value
				case "comm_name":
					p.comm = l.Value
				case "comm_id":
					if p.comm == "" {
						p.comm = l.Value
					}
				case "node", "hostname":
					p.node = l.Value
				case "nranks", "n_ranks":
					p.nranks, _ = strconv.Atoi(l.Value)
				case "rank":
					if r, err := strconv.Atoi(l.Value); err == nil {
						p.rank = r
					}
				case "algo_proto":
					p.algoProto = l.Value
				case "message_size":
					size = l.Value
				}
			}
			n, okSize := parseSizeLabel(size)
			if p.name == "" || !okSize || math.IsNaN(p.value) || math.IsInf(p.value, 0) || p.value < 0 {
				bad++
				if first == "" {
					first = fmt.Sprintf("%s: missing operation or message_size, or unusable value", s.Name)
				}
				continue
			}
			p.msgBytes = n
			key := fmt.Sprintf("%s\x00%v\x00%s\x00%s\x00%s\x00%d\x00%d\x00%s\x00%s", p.metric, p.p2p, p.name, p.comm, p.node, p.nranks, p.rank, p.algoProto, sizeBucket(n))
			if i, dup := latest[key]; dup {
				out[i] = p
				continue
			}
			latest[key] = len(out)
			out = append(out, p)
		}
	}
	return out, bad, first
}

var sizeLabel = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(?:-[0-9]+)?(B|KB|MB|GB|TB)$`)

// parseSizeLabel reads the lower bound of the Inspector's message_size label ("4-5GB", "512B", "2.00GB").
// The Inspector's units are binary (it divides by 1024).
func parseSizeLabel(s string) (uint64, bool) {
	m := sizeLabel.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	scale := map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[2]]
	b := v * scale
	if b >= math.MaxUint64/2 {
		return 0, false
	}
	return uint64(b), true
}

// splitLines returns the complete lines of buf (without their line ending) and, for each, the offset just
// past its newline; a trailing piece with no newline is left for the next read, since the writer may be in
// the middle of it.
func splitLines(buf []byte) (lines [][]byte, ends []int) {
	used := 0
	for {
		i := bytes.IndexByte(buf[used:], '\n')
		if i < 0 {
			return lines, ends
		}
		lines = append(lines, bytes.TrimRight(buf[used:used+i], "\r"))
		used += i + 1
		ends = append(ends, used)
	}
}
