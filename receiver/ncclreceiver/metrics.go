package ncclreceiver

import (
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/internal/topology"
	"github.com/servescope/servescope/receiver/ncclreceiver/internal/metadata"
)

// bounds of the duration and skew histograms, in seconds: 1 µs (a small intra-node all-reduce) to 10 s
// (a collective stuck behind a dead peer).
var bounds = []float64{
	1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
	0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// staleAfter is how long a series that receives nothing is still emitted; then it is forgotten, so that
// finished processes and destroyed communicators do not hold memory forever.
const staleAfter = 10 * time.Minute

// proc is one process writing Inspector records: one rank of each of its communicators, normally one GPU.
// Its resource is the host, GPU and replica; the pid goes on the data points (a data-point attribute in the
// schema, as on the nvml receiver's per-process metrics).
type proc struct {
	key     string
	host    string
	pid     int64
	replica int // index into cfg.Replicas, -1 when no rule matches
	gpu     gpuRef
	gpuOK   bool
	looked  uint64                         // interval of the last GPU lookup
	comms   map[string]topology.Membership // by communicator id, for the rank layout
	seen    time.Time
}

// opSeries is one rank's operations of one kind: communicator x operation x size bucket (x peer for P2P).
type opSeries struct {
	proc   *proc
	name   string
	comm   string
	bucket string
	rank   int
	nranks int
	peer   int
	timing string
	histogram

	// this interval's bandwidth, time-weighted: sum(bw x t) / sum(t)
	busW, algoW, weight float64
	seen                time.Time
}

type skewSeries struct {
	proc     *proc
	basis    string
	name     string
	comm     string
	bucket   string
	nranks   int
	lateRank int
	rank     int
	histogram
	seen time.Time
}

// histogram is one cumulative series of seconds in the receiver's buckets.
type histogram struct {
	counts []uint64
	sum    float64
	n      uint64
}

func newHistogram() histogram { return histogram{counts: make([]uint64, len(bounds)+1)} }

func (h *histogram) observe(secs float64) {
	h.counts[sort.SearchFloat64s(bounds, secs)]++
	h.sum += secs
	h.n++
}

// writeTo fills a cumulative data point (attributes are the caller's).
func (h *histogram) writeTo(dp pmetric.HistogramDataPoint, start, ts pcommon.Timestamp) {
	dp.SetStartTimestamp(start)
	dp.SetTimestamp(ts)
	dp.ExplicitBounds().FromRaw(bounds)
	dp.BucketCounts().FromRaw(h.counts)
	dp.SetSum(h.sum)
	dp.SetCount(h.n)
}

// promSet is the last reading of one textfile.
type promSet struct {
	path    string
	gpu     string
	replica int
	pts     []promPoint
	fresh   bool // read in this interval
}

// replicaState is what the receiver knows about a replica's visibility.
type replicaState struct {
	lastRecord time.Time
	files      bool // some followed file matches its files pattern
}

// aggregator turns records into cumulative metrics. Cumulative series start when the receiver starts; a
// restart resets them (with a new start time), and the checkpointed offsets make sure the records read
// before the restart are not read again, so nothing is counted twice.
type aggregator struct {
	cfg      *Config
	logger   *zap.Logger
	locate   gpuLocator
	hostname string
	start    pcommon.Timestamp
	interval uint64
	now      time.Time

	procs    map[string]*proc
	ops      map[string]*opSeries
	skews    map[string]*skewSeries
	proms    map[string]*promSet
	replicas []replicaState
	skew     *skewer

	records, rejects, dropped int64 // since the last telemetry flush
	droppedNoted              bool
}

func newAggregator(cfg *Config, logger *zap.Logger, locate gpuLocator, hostname string, start time.Time) *aggregator {
	return &aggregator{
		cfg: cfg, logger: logger, locate: locate, hostname: hostname,
		start: pcommon.NewTimestampFromTime(start), now: start,
		procs: map[string]*proc{}, ops: map[string]*opSeries{}, skews: map[string]*skewSeries{}, proms: map[string]*promSet{},
		replicas: make([]replicaState, len(cfg.Replicas)), skew: newSkewer(cfg.Skew, cfg.MaxSeries),
	}
}

// begin starts an interval.
func (a *aggregator) begin(now time.Time) {
	a.interval++
	a.now = now
	for i := range a.replicas {
		a.replicas[i].files = false
	}
}

// matchReplica returns the first rule matching the file and host, or -1.
func (a *aggregator) matchReplica(path, host string) int {
	for i, r := range a.cfg.Replicas {
		if r.Files != "" {
			if ok, _ := filepath.Match(r.Files, path); !ok {
				continue
			}
		}
		if r.hostRE != nil && !r.hostRE.MatchString(host) {
			continue
		}
		return i
	}
	return -1
}

// file is called by the tailer for every file it follows, read or not.
func (a *aggregator) file(f *tracked) {
	path := f.path
	for i, r := range a.cfg.Replicas {
		if r.Files != "" {
			if ok, _ := filepath.Match(r.Files, path); ok {
				a.replicas[i].files = true
			}
		}
	}
}

func (a *aggregator) procFor(f *tracked, o *op) *proc {
	key := o.host + "\x00" + strconv.FormatInt(o.pid, 10)
	p := a.procs[key]
	if p == nil {
		p = &proc{key: key, host: o.host, pid: o.pid, replica: a.matchReplica(f.path, o.host), comms: map[string]topology.Membership{}}
		a.procs[key] = p
	}
	p.seen = a.now
	// NVML knows this host's processes only; a record from another host (a shared directory) has no GPU here.
	if !p.gpuOK && a.locate != nil && o.host == a.hostname && p.looked != a.interval {
		p.looked = a.interval
		p.gpu, p.gpuOK = a.locate.lookup(o.pid, a.interval)
	}
	if _, ok := p.comms[o.commID]; !ok && len(p.comms) < 64 {
		p.comms[o.commID] = topology.Membership{NRanks: o.nranks, Rank: o.rank, Name: o.commName}
	}
	return p
}

// record is called by the tailer for each JSON record.
func (a *aggregator) record(f *tracked, o op) {
	a.records++
	p := a.procFor(f, &o)
	if p.replica >= 0 {
		a.replicas[p.replica].lastRecord = a.now
	}
	bucket := sizeBucket(o.msgBytes)
	key := p.key + "\x00" + o.commID + "\x00" + o.name + "\x00" + bucket + "\x00" + strconv.Itoa(o.peer) + "\x00" + o.timing
	s := a.ops[key]
	if s == nil {
		if a.seriesCount() >= a.cfg.MaxSeries {
			a.drop()
			return
		}
		s = &opSeries{
			proc: p, name: o.name, comm: o.communicator(), bucket: bucket, rank: o.rank, nranks: o.nranks,
			peer: o.peer, timing: o.timing, histogram: newHistogram(),
		}
		a.ops[key] = s
	}
	secs := o.execUs / 1e6
	s.observe(secs)
	s.seen = a.now
	if secs > 0 && !math.IsNaN(o.busGBs) && !math.IsNaN(o.algoGBs) {
		s.busW += o.busGBs * secs
		s.algoW += o.algoGBs * secs
		s.weight += secs
	}
	if !o.p2p {
		for _, r := range a.skew.add(&o, p, a.interval) {
			a.addSkew(r)
		}
	}
}

func (a *aggregator) seriesCount() int { return len(a.ops) + len(a.skews) }

func (a *aggregator) drop() {
	a.dropped++
	if !a.droppedNoted {
		a.droppedNoted = true
		a.logger.Warn("max_series reached: operations of new communicators, sizes or ranks are not recorded until old series go stale",
			zap.Int("max_series", a.cfg.MaxSeries))
	}
}

func (a *aggregator) addSkew(r skewResult) {
	key := r.proc.key + "\x00" + r.basis + "\x00" + r.name + "\x00" + r.label + "\x00" + r.bucket + "\x00" +
		strconv.Itoa(r.lateRank) + "\x00" + strconv.Itoa(r.rank)
	s := a.skews[key]
	if s == nil {
		if a.seriesCount() >= a.cfg.MaxSeries {
			a.drop()
			return
		}
		s = &skewSeries{
			proc: r.proc, basis: r.basis, name: r.name, comm: r.label, bucket: r.bucket, nranks: r.nranks,
			lateRank: r.lateRank, rank: r.rank, histogram: newHistogram(),
		}
		a.skews[key] = s
	}
	s.observe(r.skewS)
	s.seen = a.now
}

// prom is called by the tailer with a changed textfile's samples.
func (a *aggregator) prom(f *tracked, pts []promPoint) {
	host := ""
	if len(pts) > 0 {
		host = pts[0].node
	}
	ps := &promSet{path: f.path, gpu: gpuFromPromFile(f.path), replica: a.matchReplica(f.path, host), pts: pts, fresh: true}
	a.proms[f.path] = ps
	if ps.replica >= 0 {
		a.replicas[ps.replica].lastRecord = a.now
	}
}

func (a *aggregator) rejected(_ *tracked, n int, _ string) { a.rejects += int64(n) }

// emit builds this interval's metrics and forgets what went stale.
func (a *aggregator) emit() pmetric.Metrics {
	for _, r := range a.skew.expire(a.interval) {
		a.addSkew(r)
	}
	ts := pcommon.NewTimestampFromTime(a.now)
	md := pmetric.NewMetrics()
	res := map[*proc]*resourceOut{}
	out := func(p *proc) *resourceOut {
		r := res[p]
		if r == nil {
			r = newResourceOut(md)
			a.procResource(p, r.attrs())
			res[p] = r
		}
		return r
	}
	for _, k := range slices.Sorted(maps.Keys(a.ops)) {
		s := a.ops[k]
		if a.now.Sub(s.seen) > staleAfter {
			delete(a.ops, k)
			continue
		}
		r := out(s.proc)
		attrs := func(m pcommon.Map) {
			a.opAttrs(s, m)
		}
		h := r.histogram(canonical.LLMCollectiveDuration).DataPoints().AppendEmpty()
		s.writeTo(h, a.start, ts)
		attrs(h.Attributes())
		c := r.sum(canonical.LLMCollectiveCount).DataPoints().AppendEmpty()
		c.SetStartTimestamp(a.start)
		c.SetTimestamp(ts)
		c.SetIntValue(int64(s.n))
		attrs(c.Attributes())
		if s.weight > 0 {
			for _, g := range []struct {
				metric canonical.Gauge
				v      float64
			}{{canonical.LLMCollectiveBusBandwidth, s.busW / s.weight}, {canonical.LLMCollectiveAlgoBandwidth, s.algoW / s.weight}} {
				dp := r.gauge(g.metric).DataPoints().AppendEmpty()
				dp.SetTimestamp(ts)
				dp.SetDoubleValue(g.v * 1e9) // the Inspector's GB/s are decimal
				attrs(dp.Attributes())
			}
			s.busW, s.algoW, s.weight = 0, 0, 0
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a.skews)) {
		s := a.skews[k]
		if a.now.Sub(s.seen) > staleAfter {
			delete(a.skews, k)
			continue
		}
		dp := out(s.proc).histogram(canonical.LLMCollectiveArrivalSkew).DataPoints().AppendEmpty()
		s.writeTo(dp, a.start, ts)
		m := dp.Attributes()
		m.PutInt(schema.AttrProcessPid, s.proc.pid)
		m.PutStr(schema.AttrLLMCollectiveType, s.name)
		m.PutStr(schema.AttrLLMCollectiveCommunicator, s.comm)
		m.PutStr(schema.AttrLLMCollectiveMessageSizeBucket, s.bucket)
		m.PutInt(schema.AttrLLMCollectiveNranks, int64(s.nranks))
		m.PutStr(schema.AttrLLMCollectiveSkewBasis, s.basis)
		if s.lateRank >= 0 {
			m.PutInt(schema.AttrLLMCollectiveLateRank, int64(s.lateRank))
		}
		if s.rank >= 0 {
			m.PutInt(schema.AttrLLMCollectiveRank, int64(s.rank))
		}
		// The late (or measured) rank's place in the layout, so a straggler reads as "tp rank 1 of stage 0".
		if s.lateRank >= 0 || s.rank >= 0 {
			a.position(s.proc).Put(m, a.replicaID(s.proc.replica))
		}
	}
	a.emitProm(md, ts)
	a.emitObservability(md, ts)
	for k, p := range a.procs {
		if a.now.Sub(p.seen) > staleAfter {
			a.skew.forget(p)
			delete(a.procs, k)
		}
	}
	return md
}

func (a *aggregator) opAttrs(s *opSeries, m pcommon.Map) {
	m.PutInt(schema.AttrProcessPid, s.proc.pid)
	m.PutStr(schema.AttrLLMCollectiveType, s.name)
	m.PutStr(schema.AttrLLMCollectiveCommunicator, s.comm)
	m.PutStr(schema.AttrLLMCollectiveMessageSizeBucket, s.bucket)
	m.PutInt(schema.AttrLLMCollectiveRank, int64(s.rank))
	m.PutInt(schema.AttrLLMCollectiveNranks, int64(s.nranks))
	if s.peer >= 0 {
		m.PutInt(schema.AttrLLMCollectivePeer, int64(s.peer))
	}
	if s.timing != "" {
		m.PutStr(schema.AttrLLMCollectiveTimingSource, s.timing)
	}
	a.position(s.proc).Put(m, a.replicaID(s.proc.replica))
}

func (a *aggregator) replicaID(i int) string {
	if i < 0 {
		return ""
	}
	return a.cfg.Replicas[i].ServiceInstanceID
}

// position places a process in its replica's layout, from the communicators it belongs to.
func (a *aggregator) position(p *proc) topology.Position {
	if p.replica < 0 {
		return topology.Unknown
	}
	ms := make([]topology.Membership, 0, len(p.comms))
	ids := make([]string, 0, len(p.comms))
	for id := range p.comms {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ms = append(ms, p.comms[id])
	}
	return a.cfg.Replicas[p.replica].sizes().FromMemberships(ms)
}

func (a *aggregator) procResource(p *proc, m pcommon.Map) {
	if p.host != "" {
		m.PutStr(schema.AttrHostName, p.host)
	}
	if p.gpuOK {
		m.PutStr(schema.AttrHwID, p.gpu.uuid)
		m.PutInt(schema.AttrNvidiaGPUIndex, int64(p.gpu.index))
	}
	a.replicaResource(p.replica, m)
}

func (a *aggregator) replicaResource(i int, m pcommon.Map) {
	if i < 0 {
		return
	}
	r := a.cfg.Replicas[i]
	m.PutStr(schema.AttrServiceInstanceID, r.ServiceInstanceID)
	if r.Engine != "" {
		m.PutStr(schema.AttrLLMEngineName, r.Engine)
	}
	if r.TensorParallelSize > 0 || r.PipelineParallelSize > 0 || r.DataParallelSize > 0 {
		r.sizes().PutSizes(m)
	}
}

// emitProm emits the textfiles read in this interval. The Inspector's Prometheus mode aggregates each dump
// window itself (mean time, geometric-mean bandwidth) and keeps no counts, so these are gauges of that
// window, emitted once when the file changes; an unchanged file is old news, not a steady state.
func (a *aggregator) emitProm(md pmetric.Metrics, ts pcommon.Timestamp) {
	paths := make([]string, 0, len(a.proms))
	for p := range a.proms {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		ps := a.proms[path]
		if !ps.fresh {
			delete(a.proms, path)
			continue
		}
		ps.fresh = false
		r := newResourceOut(md)
		m := r.attrs()
		if len(ps.pts) > 0 && ps.pts[0].node != "" {
			m.PutStr(schema.AttrHostName, ps.pts[0].node)
		}
		if ps.gpu != "" {
			m.PutStr(schema.AttrHwID, ps.gpu)
		}
		a.replicaResource(ps.replica, m)
		for _, p := range ps.pts {
			var dp pmetric.NumberDataPoint
			switch p.metric {
			case "exec_time":
				dp = r.gauge(canonical.LLMCollectiveMeanDuration).DataPoints().AppendEmpty()
				dp.SetDoubleValue(p.value / 1e6)
			case "bus_bandwidth":
				dp = r.gauge(canonical.LLMCollectiveBusBandwidth).DataPoints().AppendEmpty()
				dp.SetDoubleValue(p.value * 1e9)
			case "algo_bandwidth":
				dp = r.gauge(canonical.LLMCollectiveAlgoBandwidth).DataPoints().AppendEmpty()
				dp.SetDoubleValue(p.value * 1e9)
			default:
				continue
			}
			dp.SetTimestamp(ts)
			at := dp.Attributes()
			at.PutStr(schema.AttrLLMCollectiveType, p.name)
			if p.comm != "" {
				at.PutStr(schema.AttrLLMCollectiveCommunicator, p.comm)
			}
			at.PutStr(schema.AttrLLMCollectiveMessageSizeBucket, sizeBucket(p.msgBytes))
			if p.nranks > 0 {
				at.PutInt(schema.AttrLLMCollectiveNranks, int64(p.nranks))
			}
			if p.rank >= 0 {
				at.PutInt(schema.AttrLLMCollectiveRank, int64(p.rank))
			}
			if p.algoProto != "" {
				at.PutStr(schema.AttrLLMCollectiveAlgoProto, p.algoProto)
			}
		}
	}
}

// emitObservability says, per configured replica, whether its collective time can be seen at all. It is
// conservative: until a record arrives, and when the engine's all-reduce bypasses NCCL, the answer is no,
// so that nothing downstream blames collective waiting without evidence.
func (a *aggregator) emitObservability(md pmetric.Metrics, ts pcommon.Timestamp) {
	for i, rule := range a.cfg.Replicas {
		st := a.replicas[i]
		observable, reason := true, "records"
		switch {
		case rule.customAllReduce():
			observable, reason = false, "custom_all_reduce"
		case rule.Files != "" && !st.files && st.lastRecord.IsZero():
			observable, reason = false, "no_files"
		case st.lastRecord.IsZero() || a.now.Sub(st.lastRecord) > a.cfg.ExpectRecordsWithin:
			observable, reason = false, "no_records"
		}
		r := newResourceOut(md)
		a.replicaResource(i, r.attrs())
		dp := r.gauge(canonical.LLMCollectiveObservability).DataPoints().AppendEmpty()
		dp.SetTimestamp(ts)
		if observable {
			dp.SetIntValue(1)
		} else {
			dp.SetIntValue(0)
		}
		dp.Attributes().PutBool(schema.AttrLLMCollectiveObservable, observable)
		dp.Attributes().PutStr(schema.AttrLLMCollectiveObservableReason, reason)
	}
}

// resourceOut collects one resource's metrics by name, each appended by its canonical builder on first use.
type resourceOut struct {
	rm      pmetric.ResourceMetrics
	sm      pmetric.ScopeMetrics
	metrics map[string]pmetric.Metric
}

func newResourceOut(md pmetric.Metrics) *resourceOut {
	rm := md.ResourceMetrics().AppendEmpty()
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	return &resourceOut{rm: rm, sm: sm, metrics: map[string]pmetric.Metric{}}
}

func (r *resourceOut) attrs() pcommon.Map { return r.rm.Resource().Attributes() }

func (r *resourceOut) metric(builder canonical.Metric) pmetric.Metric {
	if m, ok := r.metrics[builder.Name()]; ok {
		return m
	}
	m := builder.AppendMetric(r.sm.Metrics())
	r.metrics[builder.Name()] = m
	return m
}

func (r *resourceOut) histogram(h canonical.Histogram) pmetric.Histogram {
	return r.metric(h).Histogram()
}

func (r *resourceOut) sum(c canonical.Counter) pmetric.Sum { return r.metric(c).Sum() }

func (r *resourceOut) gauge(g canonical.Gauge) pmetric.Gauge { return r.metric(g).Gauge() }
