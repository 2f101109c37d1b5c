package ncclreceiver

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/fleetstate"
	"github.com/servescope/servescope/internal/metricstest"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/ncclreceiver/internal/metadata"
	"github.com/servescope/servescope/receiver/ncclreceiver/internal/metadatatest"
)

// rig runs one receiver built by the factory against a sink; the first interval runs at Start, and tick
// runs the next ones without waiting for the (hour-long) collection interval.
type rig struct {
	t    *testing.T
	r    *ncclReceiver
	sink *consumertest.MetricsSink
	logs *observer.ObservedLogs
	tel  *componenttest.Telemetry // the receiver's own telemetry
}

func newRig(t *testing.T, cfg *Config) *rig {
	t.Helper()
	cfg.CollectionInterval = time.Hour
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) }) // after the shutdown below
	set := metadatatest.NewSettings(tel)
	set.Logger = zap.New(core)
	sink := new(consumertest.MetricsSink)
	f := newFactory(func(*Config, *zap.Logger) gpuLocator { return nil })
	rcv, err := f.CreateMetrics(context.Background(), set, cfg, sink)
	require.NoError(t, err)
	g := &rig{t: t, r: rcv.(*ncclReceiver), sink: sink, logs: logs, tel: tel}
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, rcv.Shutdown(context.Background())) })
	require.Eventually(t, func() bool { return g.intervals() >= 1 }, 5*time.Second, time.Millisecond)
	return g
}

func (g *rig) intervals() uint64 {
	g.r.mu.Lock()
	defer g.r.mu.Unlock()
	return g.r.files.agg.interval
}

func (g *rig) tick() { g.r.collect(context.Background()) }

// last returns the newest batch (cumulative series carry everything so far).
func (g *rig) last() pmetric.Metrics {
	all := g.sink.AllMetrics()
	require.NotEmpty(g.t, all, "nothing was emitted")
	return all[len(all)-1]
}

// point is one data point with its resource and point attributes merged.
type point struct {
	attrs map[string]any
	value float64 // gauges and sums
	sum   float64 // histograms
	count uint64
}

func points(md pmetric.Metrics, name string) []point {
	var out []point
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		rm := md.ResourceMetrics().At(i)
		res := rm.Resource().Attributes().AsRaw()
		for j := 0; j < rm.ScopeMetrics().Len(); j++ {
			ms := rm.ScopeMetrics().At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				if m.Name() != name {
					continue
				}
				merge := func(a pcommon.Map) map[string]any {
					out := map[string]any{}
					for k, v := range res {
						out[k] = v
					}
					for k, v := range a.AsRaw() {
						out[k] = v
					}
					return out
				}
				switch m.Type() {
				case pmetric.MetricTypeHistogram:
					for d := 0; d < m.Histogram().DataPoints().Len(); d++ {
						dp := m.Histogram().DataPoints().At(d)
						out = append(out, point{attrs: merge(dp.Attributes()), sum: dp.Sum(), count: dp.Count()})
					}
				case pmetric.MetricTypeGauge:
					for d := 0; d < m.Gauge().DataPoints().Len(); d++ {
						dp := m.Gauge().DataPoints().At(d)
						v := dp.DoubleValue()
						if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
							v = float64(dp.IntValue())
						}
						out = append(out, point{attrs: merge(dp.Attributes()), value: v})
					}
				case pmetric.MetricTypeSum:
					for d := 0; d < m.Sum().DataPoints().Len(); d++ {
						dp := m.Sum().DataPoints().At(d)
						out = append(out, point{attrs: merge(dp.Attributes()), value: float64(dp.IntValue())})
					}
				}
			}
		}
	}
	return out
}

// where keeps the points whose attributes include all of want.
func where(ps []point, want map[string]any) []point {
	var out []point
	for _, p := range ps {
		ok := true
		for k, v := range want {
			if p.attrs[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, p)
		}
	}
	return out
}

// copyFixture copies testdata/<dir> into a fresh directory, so tests may append, rename and truncate.
func copyFixture(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(filepath.Join("testdata", dir))
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", dir, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

func baseConfig(include ...string) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Include = include
	cfg.GPULookup = "none"
	return cfg
}

// stragglerRig runs the receiver over a copy of the tp4-straggler fixture, as replica a:8000 (vLLM, TP 4).
func stragglerRig(t *testing.T) (string, *rig) {
	dir := copyFixture(t, "tp4-straggler")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.Replicas = []ReplicaRule{{
		Files: filepath.Join(dir, "*"), ServiceInstanceID: "a:8000", Engine: "vllm",
		TensorParallelSize: 4, AllReduce: "nccl",
	}}
	return dir, newRig(t, cfg)
}

func TestStragglerRankIsNamedFromTimestamps(t *testing.T) {
	dir, g := stragglerRig(t)
	md := g.last()

	skew := points(md, schema.MetricLLMCollectiveArrivalSkew)
	require.Len(t, skew, 1, "every collective should name the same late rank: %v", skew)
	s := skew[0]
	assert.Equal(t, int64(2), s.attrs[schema.AttrLLMCollectiveLateRank])
	assert.Equal(t, "timestamps", s.attrs[schema.AttrLLMCollectiveSkewBasis])
	assert.Equal(t, int64(2), s.attrs[schema.AttrLLMParallelTpRank], "the straggler's place in the layout")
	assert.Equal(t, "a:8000/dp0/pp0", s.attrs[schema.AttrLLMParallelGroup])
	assert.Equal(t, "TP Group 0", s.attrs[schema.AttrLLMCollectiveCommunicator])
	assert.Equal(t, "16MiB-32MiB", s.attrs[schema.AttrLLMCollectiveMessageSizeBucket])
	assert.Equal(t, uint64(20), s.count)
	mean := s.sum / float64(s.count)
	assert.InDelta(t, 1.2e-3, mean, 25e-6, "skew is rank 2's lateness")

	dur := points(md, schema.MetricLLMCollectiveDuration)
	require.Len(t, dur, 4)
	for _, p := range dur {
		rank := p.attrs[schema.AttrLLMCollectiveRank].(int64)
		assert.Equal(t, uint64(20), p.count, "rank %d: the cut and stray lines and the unfinished last record are not records", rank)
		assert.Equal(t, rank, p.attrs[schema.AttrLLMParallelTpRank])
		assert.Equal(t, "kernel_gpu", p.attrs[schema.AttrLLMCollectiveTimingSource])
		assert.Equal(t, "a:8000", p.attrs[schema.AttrServiceInstanceID])
		assert.Equal(t, "node-a", p.attrs[schema.AttrHostName])
		mean := p.sum / float64(p.count)
		if rank == 2 {
			assert.InDelta(t, 200e-6, mean, 25e-6, "the late rank does not wait")
		} else {
			assert.InDelta(t, 1.4e-3, mean, 25e-6, "the others wait for it inside the all-reduce")
		}
	}
	bus := where(points(md, schema.MetricLLMCollectiveBusBandwidth), map[string]any{schema.AttrLLMCollectiveRank: int64(2)})
	require.Len(t, bus, 1)
	// 16 MiB in ~200 µs per rank-2 record: algorithm bandwidth ~84 GB/s, bus 1.5x that for 4 ranks.
	assert.InDelta(t, 1.5*16.777216e6/200e-6, bus[0].value, 0.05*1.5*16.777216e6/200e-6)

	obs := points(md, schema.MetricLLMCollectiveObservability)
	require.Len(t, obs, 1)
	assert.Equal(t, 1.0, obs[0].value)
	assert.Equal(t, "records", obs[0].attrs[schema.AttrLLMCollectiveObservableReason])

	// The broken lines of rank 1's file are reported once, with the file, and nothing about the other files.
	bad := g.logs.FilterMessageSnippet("not a record").All()
	require.Len(t, bad, 1)
	assert.True(t, strings.HasSuffix(bad[0].ContextMap()["file"].(string), "node-a-pid4102.log"))

	// A second interval with nothing new changes no count.
	g.tick()
	for _, p := range points(g.last(), schema.MetricLLMCollectiveDuration) {
		assert.Equal(t, uint64(20), p.count)
	}
	assert.Len(t, g.logs.FilterMessageSnippet("not a record").All(), 1, "reported once, not per interval")

	// The writer finishes rank 3's last record (and the other ranks write theirs): it is counted once.
	finish := func(pid int, rank int, lateBy uint64) {
		f, err := os.OpenFile(filepath.Join(dir, "node-a-pid"+strconv.Itoa(pid)+".log"), os.O_RDWR|os.O_APPEND, 0)
		require.NoError(t, err)
		defer f.Close()
		if pid == 4104 {
			b, _ := os.ReadFile(f.Name())
			cut := strings.LastIndexByte(string(b), '\n') + 1
			require.NoError(t, f.Truncate(int64(cut)))
		}
		_, err = f.WriteString(record21(pid, rank, lateBy) + "\n")
		require.NoError(t, err)
	}
	finish(4101, 0, 0)
	finish(4102, 1, 0)
	finish(4103, 2, 1200)
	finish(4104, 3, 0)
	g.tick()
	md = g.last()
	for _, p := range points(md, schema.MetricLLMCollectiveDuration) {
		assert.Equal(t, uint64(21), p.count)
	}
	assert.Equal(t, uint64(21), points(md, schema.MetricLLMCollectiveArrivalSkew)[0].count)
}

// record21 is collective 21 of the tp4-straggler fixture in the same layout.
func record21(pid, rank int, lateBy uint64) string {
	start := uint64(1767225600210000) + lateBy
	exec := uint64(1767225600211400) - start
	return `{"header":{"id":"0x1f2e3d4c5b6a79","comm_name":"TP Group 0","rank":` + strconv.Itoa(rank) + `,"n_ranks":4,"nnodes":1},` +
		`"metadata":{"inspector_output_format_version":"v4.0","git_rev":"","rec_mechanism":"nccl_profiler_interface","dump_timestamp_us":1767225600215000,"hostname":"node-a","pid":` + strconv.Itoa(pid) + `},` +
		`"coll_perf":{"coll":"AllReduce","coll_sn":21,"coll_msg_size_bytes":16777216,"coll_exec_time_us":` + u64(exec) + `,"coll_timing_source":"kernel_gpu","coll_algobw_gbs":10.0,"coll_busbw_gbs":15.0,` +
		`"event_trace_ts":{"coll_start_ts":` + u64(start-40) + `,"coll_stop_ts":` + u64(start-35) + `,"kernel_events":[{"channel_id":0,"kernel_start_ts":` + u64(start) + `,"kernel_stop_ts":1767225600211400,"kernel_record_ts":1767225600211400}]}}}`
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

func TestIdlePipelineStageIsPlacedByTopology(t *testing.T) {
	dir := copyFixture(t, "tp2pp2-idle-stage")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.Replicas = []ReplicaRule{{
		Files: filepath.Join(dir, "*"), ServiceInstanceID: "b:8000",
		TensorParallelSize: 2, PipelineParallelSize: 2,
	}}
	g := newRig(t, cfg)
	md := g.last()

	dur := points(md, schema.MetricLLMCollectiveDuration)
	// Each process' place comes from the unnamed world communicator: pid 5201 + global rank.
	for _, p := range dur {
		global := p.attrs[schema.AttrProcessPid].(int64) - 5201
		assert.Equal(t, global%2, p.attrs[schema.AttrLLMParallelTpRank], "pid %v", p.attrs[schema.AttrProcessPid])
		assert.Equal(t, global/2, p.attrs[schema.AttrLLMParallelPpRank], "pid %v", p.attrs[schema.AttrProcessPid])
		assert.Equal(t, "b:8000/dp0/pp"+strconv.FormatInt(global/2, 10), p.attrs[schema.AttrLLMParallelGroup])
		assert.Equal(t, int64(2), p.attrs[schema.AttrLLMParallelPpSize])
	}

	recv := where(dur, map[string]any{schema.AttrLLMCollectiveType: "Recv"})
	send := where(dur, map[string]any{schema.AttrLLMCollectiveType: "Send"})
	require.Len(t, recv, 2, "one Recv series per stage-1 rank")
	require.Len(t, send, 2)
	for _, p := range recv {
		assert.Equal(t, int64(1), p.attrs[schema.AttrLLMParallelPpRank], "only stage 1 receives")
		assert.Equal(t, int64(0), p.attrs[schema.AttrLLMCollectivePeer])
		assert.Equal(t, uint64(10), p.count)
		assert.InDelta(t, 0.090, p.sum, 1e-9, "stage 1 idles 9 ms per step waiting for stage 0")
	}
	for _, p := range send {
		assert.Equal(t, int64(0), p.attrs[schema.AttrLLMParallelPpRank])
		assert.InDelta(t, 0.003, p.sum, 1e-9)
	}
	// Per stage, time spent waiting on the previous stage versus time in the stage's own all-reduces.
	stageWait := map[int64]float64{}
	for _, p := range recv {
		stageWait[p.attrs[schema.AttrLLMParallelPpRank].(int64)] += p.sum
	}
	assert.Greater(t, stageWait[1], 50*stageWait[0], "the idle stage stands out")

	// The tensor-parallel all-reduces finish evenly: their skew is measured but names nobody.
	skew := points(md, schema.MetricLLMCollectiveArrivalSkew)
	require.NotEmpty(t, skew)
	for _, p := range skew {
		assert.Equal(t, "durations", p.attrs[schema.AttrLLMCollectiveSkewBasis])
		assert.NotContains(t, p.attrs, schema.AttrLLMCollectiveLateRank)
		assert.Equal(t, 0.0, p.sum)
	}
}

func TestCrossHostSkewFromDurationsAndSelfHistory(t *testing.T) {
	dir := copyFixture(t, "v2.28-two-hosts")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	g := newRig(t, cfg)
	g.tick()
	g.tick() // the lonely communicator's collectives wait two intervals for peers that never come
	md := g.last()
	skew := points(md, schema.MetricLLMCollectiveArrivalSkew)

	cross := where(skew, map[string]any{schema.AttrLLMCollectiveSkewBasis: "durations"})
	require.Len(t, cross, 1, "%v", skew)
	assert.Equal(t, int64(1), cross[0].attrs[schema.AttrLLMCollectiveLateRank], "the rank that waited least arrived last")
	assert.Equal(t, "node-d", cross[0].attrs[schema.AttrHostName])
	assert.Equal(t, "0xdddd0000000001", cross[0].attrs[schema.AttrLLMCollectiveCommunicator], "no name before NCCL 2.30: the hash")
	assert.Equal(t, uint64(3), cross[0].count)
	assert.InDelta(t, 3*800e-6, cross[0].sum, 1e-9)

	self := where(skew, map[string]any{schema.AttrLLMCollectiveSkewBasis: "self_history"})
	require.Len(t, self, 1, "%v", skew)
	assert.Equal(t, int64(0), self[0].attrs[schema.AttrLLMCollectiveRank])
	assert.NotContains(t, self[0].attrs, schema.AttrLLMCollectiveLateRank, "one rank cannot name another")
	// Eight records build the baseline; of the four after it two took 600 µs above the minimum.
	assert.Equal(t, uint64(4), self[0].count)
	assert.InDelta(t, 2*600e-6, self[0].sum, 1e-9)
}

func TestClocksSynchronizedComparesStartsAcrossHosts(t *testing.T) {
	// The same two-host data: without start times nothing changes, since there is nothing to compare.
	dir := copyFixture(t, "v2.28-two-hosts")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.Skew.Clocks = "synchronized"
	g := newRig(t, cfg)
	cross := where(points(g.last(), schema.MetricLLMCollectiveArrivalSkew), map[string]any{schema.AttrLLMCollectiveSkewBasis: "durations"})
	require.Len(t, cross, 1)
}

func TestPrometheusTextfiles(t *testing.T) {
	dir := copyFixture(t, "prom")
	cfg := baseConfig(filepath.Join(dir, "*.prom"))
	g := newRig(t, cfg)
	md := g.last()

	mean := points(md, schema.MetricLLMCollectiveMeanDuration)
	big := where(mean, map[string]any{schema.AttrLLMCollectiveMessageSizeBucket: "16MiB-32MiB"})
	require.Len(t, big, 1, "%v", mean)
	assert.InDelta(t, 81.5e-6, big[0].value, 1e-12, "the later of two appended dumps wins")
	assert.Equal(t, "GPU-6b1c2f3e-9a4d-4e21-8c7f-0d5e4b3a2910", big[0].attrs[schema.AttrHwID])
	assert.Equal(t, "node-e", big[0].attrs[schema.AttrHostName])
	assert.Equal(t, "Ring_LL128", big[0].attrs[schema.AttrLLMCollectiveAlgoProto])
	assert.Equal(t, "TP Group 0", big[0].attrs[schema.AttrLLMCollectiveCommunicator])
	assert.Equal(t, int64(4), big[0].attrs[schema.AttrLLMCollectiveNranks])

	bus := points(md, schema.MetricLLMCollectiveBusBandwidth)
	send := where(bus, map[string]any{schema.AttrLLMCollectiveType: "Send"})
	require.Len(t, send, 1)
	assert.InDelta(t, 150.1e9, send[0].value, 1)
	assert.Equal(t, "4MiB-8MiB", send[0].attrs[schema.AttrLLMCollectiveMessageSizeBucket])

	old := where(points(md, schema.MetricLLMCollectiveAlgoBandwidth), map[string]any{schema.AttrHwID: "GPU-0f0e0d0c-0b0a-4908-8706-050403020100"})
	require.Len(t, old, 1, "NCCL 2.29's layout")
	assert.Equal(t, int64(1), old[0].attrs[schema.AttrLLMCollectiveRank])
	assert.Equal(t, "2GiB-4GiB", old[0].attrs[schema.AttrLLMCollectiveMessageSizeBucket])
	assert.Equal(t, "0x7f8c496ae9f661", old[0].attrs[schema.AttrLLMCollectiveCommunicator])
	assert.InDelta(t, 277.2e9, old[0].value, 1)

	assert.Len(t, g.logs.FilterMessageSnippet("not NCCL Inspector samples").All(), 1)

	// Unchanged files are not news.
	before := len(g.sink.AllMetrics())
	g.tick()
	if len(g.sink.AllMetrics()) > before {
		assert.Empty(t, points(g.last(), schema.MetricLLMCollectiveMeanDuration))
	}
	// The Inspector rewrites the file at its next dump: the new window's values go out.
	path := filepath.Join(dir, "nccl_inspector_metrics_0f0e0d0c-0b0a-4908-8706-050403020100.prom")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "} 7747", "} 9000")), 0o644))
	later := time.Now().Add(time.Second)
	require.NoError(t, os.Chtimes(path, later, later))
	g.tick()
	got := points(g.last(), schema.MetricLLMCollectiveMeanDuration)
	require.Len(t, got, 1)
	assert.InDelta(t, 9000e-6, got[0].value, 1e-12)
}

func TestObservabilityIsFalseWithoutEvidence(t *testing.T) {
	dir := copyFixture(t, "tp4-straggler")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.Replicas = []ReplicaRule{
		// The first rule that matches claims the records: the custom one takes two of the four files.
		{Files: filepath.Join(dir, "*pid410[12].log"), ServiceInstanceID: "custom:8000", Engine: "vllm", TensorParallelSize: 4},
		{Files: filepath.Join(dir, "nothing-*"), ServiceInstanceID: "nofiles:8000"},
		{Host: "^node-z$", ServiceInstanceID: "silent:8000"},
		{Host: "^node-a$", ServiceInstanceID: "fine:8000", AllReduce: "nccl"},
	}
	g := newRig(t, cfg)
	reasons := map[string]string{}
	values := map[string]float64{}
	for _, p := range points(g.last(), schema.MetricLLMCollectiveObservability) {
		id := p.attrs[schema.AttrServiceInstanceID].(string)
		reasons[id] = p.attrs[schema.AttrLLMCollectiveObservableReason].(string)
		values[id] = p.value
		assert.Equal(t, p.value == 1, p.attrs[schema.AttrLLMCollectiveObservable])
	}
	assert.Equal(t, map[string]string{"custom:8000": "custom_all_reduce", "nofiles:8000": "no_files", "silent:8000": "no_records", "fine:8000": "records"}, reasons)
	assert.Equal(t, 0.0, values["custom:8000"], "vLLM with TP>1 runs its small all-reduces in its own kernel unless told otherwise")
	assert.Equal(t, 1.0, values["fine:8000"])
}

func TestRecordsGoQuietAfterExpectRecordsWithin(t *testing.T) {
	dir := copyFixture(t, "tp4-straggler")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.ExpectRecordsWithin = time.Minute
	cfg.Replicas = []ReplicaRule{{Host: "node-a", ServiceInstanceID: "a:8000", AllReduce: "nccl"}}
	g := newRig(t, cfg)
	g.r.mu.Lock()
	g.r.files.agg.replicas[0].lastRecord = time.Now().Add(-2 * time.Minute) // as if the records stopped two minutes ago
	g.r.mu.Unlock()
	g.tick()
	obs := points(g.last(), schema.MetricLLMCollectiveObservability)
	require.Len(t, obs, 1)
	assert.Equal(t, "no_records", obs[0].attrs[schema.AttrLLMCollectiveObservableReason])
}

type fakeLocator struct {
	gpus  map[int64]gpuRef
	asked []int64
}

func (f *fakeLocator) lookup(pid int64, _ uint64) (gpuRef, bool) {
	f.asked = append(f.asked, pid)
	g, ok := f.gpus[pid]
	return g, ok
}
func (f *fakeLocator) close() {}

func TestGPUOfAProcessOnThisHost(t *testing.T) {
	dir := copyFixture(t, "v2.28-two-hosts")
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.GPULookup = "nvml"
	loc := &fakeLocator{gpus: map[int64]gpuRef{6001: {uuid: "GPU-aaaa", index: 3}, 7001: {uuid: "GPU-bbbb", index: 5}}}
	g := newRigOnHost(t, cfg, loc, "node-c") // the collector runs on node-c
	for _, p := range points(g.last(), schema.MetricLLMCollectiveDuration) {
		switch p.attrs[schema.AttrHostName] {
		case "node-c":
			assert.Equal(t, "GPU-aaaa", p.attrs[schema.AttrHwID])
			assert.Equal(t, int64(3), p.attrs[schema.AttrNvidiaGPUIndex])
		case "node-d":
			assert.NotContains(t, p.attrs, schema.AttrHwID, "another host's pid means nothing to this host's NVML")
		default:
			t.Errorf("unexpected host %v", p.attrs[schema.AttrHostName])
		}
	}
	assert.NotContains(t, loc.asked, int64(7001))
}

// newRigOnHost is newRig for a collector whose host name is given, so that GPU lookups are exercised.
func newRigOnHost(t *testing.T, cfg *Config, loc gpuLocator, host string) *rig {
	t.Helper()
	cfg.CollectionInterval = time.Hour
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.InfoLevel)
	set := receivertest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	sink := new(consumertest.MetricsSink)
	r, err := newReceiver(cfg, set, sink, loc)
	require.NoError(t, err)
	r.files.agg.hostname = host
	require.NoError(t, r.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, r.Shutdown(context.Background())) })
	g := &rig{t: t, r: r, sink: sink, logs: logs}
	require.Eventually(t, func() bool { return g.intervals() >= 1 }, 5*time.Second, time.Millisecond)
	return g
}

// Every metric the receiver emits is a canonical one it is declared to produce, with the schema's unit,
// description and data type and declared attributes only, so that nothing downstream meets a name the
// schema does not know.
func TestEmitsOnlyWhatTheSchemaDeclares(t *testing.T) {
	s, err := schema.Default()
	require.NoError(t, err)
	resourceLevel := map[string]bool{}
	for _, a := range s.Attributes {
		resourceLevel[a.Name] = a.Level == "resource"
	}
	for _, dir := range []string{"tp4-straggler", "tp2pp2-idle-stage", "v2.28-two-hosts", "prom"} {
		d := copyFixture(t, dir)
		cfg := baseConfig(filepath.Join(d, "*"))
		cfg.Replicas = []ReplicaRule{{Files: filepath.Join(d, "*"), ServiceInstanceID: "r:1", Engine: "vllm", TensorParallelSize: 2, PipelineParallelSize: 2}}
		g := newRig(t, cfg)
		g.tick()
		g.tick()
		md := g.last()
		for i := 0; i < md.ResourceMetrics().Len(); i++ {
			rm := md.ResourceMetrics().At(i)
			for k := range rm.Resource().Attributes().All() {
				assert.True(t, resourceLevel[k], "%s: resource attribute %s is not a declared resource attribute", dir, k)
			}
			ms := rm.ScopeMetrics().At(0).Metrics()
			for j := 0; j < ms.Len(); j++ {
				m := ms.At(j)
				def := s.Metric(m.Name())
				require.NotNil(t, def, m.Name())
				assert.Equal(t, "nccl receiver", def.ProducedBy)
				assert.Equal(t, def.Unit, m.Unit(), m.Name())
				assert.Equal(t, def.Description, m.Description(), m.Name())
				assert.Equal(t, map[schema.Instrument]pmetric.MetricType{
					schema.Counter: pmetric.MetricTypeSum, schema.Gauge: pmetric.MetricTypeGauge, schema.Histogram: pmetric.MetricTypeHistogram,
				}[def.Instrument], m.Type(), m.Name())
				declared := map[string]bool{}
				for _, a := range def.Attributes {
					declared[a] = true
				}
				for _, p := range points(md, m.Name()) {
					for k := range p.attrs {
						assert.True(t, declared[k] || resourceLevel[k], "%s: %s carries undeclared %s", dir, m.Name(), k)
					}
				}
			}
		}
	}
}

// What the connectors read from this receiver's output (internal/fleetstate): the replica's waiting, the late
// rank by its place in the layout, and the observability flag. The first batch is a baseline there (its
// counts predate any request), so the straggler shows from the second.
func TestOutputJoinsTheFleetState(t *testing.T) {
	dir, g := stragglerRig(t)
	store := fleetstate.New(fleetstate.Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}})
	first := g.last()
	store.Observe(first)
	begin := int64(metricstest.Numbers(first, schema.MetricLLMCollectiveObservability)[0].Timestamp())

	for rank, pid := range []int{4101, 4102, 4103, 4104} {
		f, err := os.OpenFile(filepath.Join(dir, "node-a-pid"+strconv.Itoa(pid)+".log"), os.O_RDWR|os.O_APPEND, 0)
		require.NoError(t, err)
		if pid == 4104 { // drop the half record the fixture ends with
			b, _ := os.ReadFile(f.Name())
			require.NoError(t, f.Truncate(int64(strings.LastIndexByte(string(b), '\n')+1)))
		}
		_, err = f.WriteString(record21(pid, rank, map[bool]uint64{true: 1200}[rank == 2]) + "\n")
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	time.Sleep(10 * time.Millisecond) // the batches' clock must move for the second to cover any time
	g.tick()
	store.Observe(g.last())

	sum := store.Summarize("a:8000", begin, time.Now().UnixNano())
	assert.Equal(t, 1.0, sum.CollectiveObservable)
	assert.Equal(t, "records", sum.CollectiveObservableReason)
	assert.Equal(t, 4.0, sum.CollectiveOperations, "collective 21 on four ranks; the 20 before it are the baseline")
	assert.InDelta(t, 1.2e-3, sum.CollectiveSkewMean, 25e-6)
	assert.Equal(t, "tp rank 2, pp stage 0, communicator TP Group 0", sum.CollectiveLateRank)
	assert.Equal(t, 1.0, sum.CollectiveLateShare)
	assert.Positive(t, sum.CollectiveWaitShare)
}
