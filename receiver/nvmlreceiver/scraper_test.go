package nvmlreceiver

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/nvmlreceiver/internal/metadata"
	"github.com/servescope/servescope/receiver/nvmlreceiver/internal/metadatatest"
)

// gpuState is what one mocked GPU reports; tests change it between scrapes.
type gpuState struct {
	samples        []nvml.Sample
	utilRate       uint32
	powerMW        uint32
	powerLimitMW   uint32
	energyMJ       uint64
	tempC          uint32
	smMHz, memMHz  uint32
	throttle       uint64
	eccCorrected   uint64
	eccUncorrected uint64
	pcieReplay     int
	remapCorr      int
	remapUnc       int
	pcieTxKB       uint32
	pcieRxKB       uint32
	nvlinkTxKiB    []uint64 // per link; nil = no NVLink
	nvlinkRxKiB    []uint64
	gpm            map[nvml.GpmMetricId]float64 // percent; nil = GPM unsupported
	procs          []nvml.ProcessInfo
	procUtil       []nvml.ProcessUtilizationSample
	memV2          *nvml.Memory_v2 // nil = a driver without the v2 memory query
	unsupported    map[string]bool
	failing        map[string]bool // queries that answer ERROR_UNKNOWN
	calls          map[string]int
}

func newState() *gpuState {
	return &gpuState{
		utilRate: 7, powerMW: 312_500, powerLimitMW: 700_000, energyMJ: 9_876_543, tempC: 61,
		smMHz: 1980, memMHz: 2619, eccCorrected: 3, pcieReplay: 2, remapCorr: 1, pcieTxKB: 1000, pcieRxKB: 2000,
		nvlinkTxKiB: []uint64{100, 200}, nvlinkRxKiB: []uint64{300, 400},
		gpm:   map[nvml.GpmMetricId]float64{nvml.GPM_METRIC_SM_UTIL: 80, nvml.GPM_METRIC_SM_OCCUPANCY: 40, nvml.GPM_METRIC_ANY_TENSOR_UTIL: 55, nvml.GPM_METRIC_DRAM_BW_UTIL: 90},
		calls: map[string]int{}, unsupported: map[string]bool{}, failing: map[string]bool{},
	}
}

func (st *gpuState) ret(query string) nvml.Return {
	st.calls[query]++
	if st.unsupported[query] {
		return nvml.ERROR_NOT_SUPPORTED
	}
	if st.failing[query] {
		return nvml.ERROR_UNKNOWN
	}
	return nvml.SUCCESS
}

func uintSample(ts uint64, percent uint32) nvml.Sample {
	s := nvml.Sample{TimeStamp: ts}
	binary.LittleEndian.PutUint32(s.SampleValue[:4], percent)
	return s
}

// arm sets every device function the receiver calls (go-nvml's mocks panic on the ones left nil).
func arm(d *server.Device, st *gpuState) {
	d.GetSamplesFunc = func(_ nvml.SamplingType, since uint64) (nvml.ValueType, []nvml.Sample, nvml.Return) {
		if r := st.ret("samples"); r != nvml.SUCCESS {
			return 0, nil, r
		}
		var out []nvml.Sample
		for _, s := range st.samples {
			if s.TimeStamp > since {
				out = append(out, s)
			}
		}
		if len(out) == 0 {
			return nvml.VALUE_TYPE_UNSIGNED_INT, nil, nvml.ERROR_NOT_FOUND
		}
		return nvml.VALUE_TYPE_UNSIGNED_INT, out, nvml.SUCCESS
	}
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{Gpu: st.utilRate}, st.ret("utilization")
	}
	d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		st.calls["memory_v2"]++
		if st.memV2 == nil {
			return nvml.Memory_v2{}, nvml.ERROR_FUNCTION_NOT_FOUND
		}
		return *st.memV2, st.ret("memory")
	}
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return st.powerMW, st.ret("power") }
	d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return st.powerLimitMW, st.ret("power_limit") }
	d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return st.energyMJ, st.ret("energy") }
	d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return st.tempC, st.ret("temperature") }
	d.GetClockInfoFunc = func(t nvml.ClockType) (uint32, nvml.Return) {
		if t == nvml.CLOCK_SM {
			return st.smMHz, st.ret("clock")
		}
		return st.memMHz, st.ret("clock")
	}
	d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) { return st.throttle, st.ret("throttle") }
	d.GetTotalEccErrorsFunc = func(t nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
		if t == nvml.MEMORY_ERROR_TYPE_CORRECTED {
			return st.eccCorrected, st.ret("ecc")
		}
		return st.eccUncorrected, st.ret("ecc")
	}
	d.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return st.pcieReplay, st.ret("pcie_replay") }
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
		return st.remapCorr, st.remapUnc, false, false, st.ret("remapped_rows")
	}
	d.GetPcieThroughputFunc = func(c nvml.PcieUtilCounter) (uint32, nvml.Return) {
		if c == nvml.PCIE_UTIL_TX_BYTES {
			return st.pcieTxKB, st.ret("pcie")
		}
		return st.pcieRxKB, st.ret("pcie")
	}
	d.GetFieldValuesFunc = func(fields []nvml.FieldValue) nvml.Return {
		st.calls["fields"]++
		for i := range fields {
			f := &fields[i]
			var values []uint64
			switch f.FieldId {
			case nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
				values = st.nvlinkTxKiB
			case nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
				values = st.nvlinkRxKiB
			}
			if int(f.ScopeId) < len(values) {
				f.ValueType = uint32(nvml.VALUE_TYPE_UNSIGNED_LONG_LONG)
				binary.LittleEndian.PutUint64(f.Value[:], values[f.ScopeId])
			} else {
				f.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			}
		}
		return nvml.SUCCESS
	}
	d.GpmQueryDeviceSupportFunc = func() (nvml.GpmSupport, nvml.Return) {
		return nvml.GpmSupport{IsSupportedDevice: map[bool]uint32{true: 1}[st.gpm != nil]}, nvml.SUCCESS
	}
	d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return st.procs, st.ret("processes") }
	d.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		if len(st.procUtil) == 0 {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return st.procUtil, st.ret("process_utilization")
	}
	d.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
}

type rig struct {
	srv    *server.Server
	states []*gpuState
	events []nvml.EventData
	logs   *observer.ObservedLogs
	tel    *componenttest.Telemetry
	s      *gpuScraper
}

func newRig(t *testing.T, srv *server.Server, mutate ...func(*Config)) *rig {
	r := &rig{srv: srv}
	for _, d := range srv.Devices {
		st := newState()
		arm(d.(*server.Device), st)
		r.states = append(r.states, st)
	}
	srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(uint32) (nvml.EventData, nvml.Return) {
				if len(r.events) == 0 {
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
				e := r.events[0]
				r.events = r.events[1:]
				return e, nvml.SUCCESS
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	srv.GpmSampleAllocFunc = func() (nvml.GpmSample, nvml.Return) {
		return &mock.GpmSample{FreeFunc: func() nvml.Return { return nvml.SUCCESS }}, nvml.SUCCESS
	}
	srv.GpmSampleGetFunc = func(nvml.Device, nvml.GpmSample) nvml.Return { return nvml.SUCCESS }
	srv.GpmMetricsGetFunc = func(get *nvml.GpmMetricsGetType) nvml.Return {
		st := r.states[0]
		for i := 0; i < int(get.NumMetrics); i++ {
			get.Metrics[i].Value = st.gpm[nvml.GpmMetricId(get.Metrics[i].MetricId)]
		}
		return nvml.SUCCESS
	}
	cfg := createDefaultConfig().(*Config)
	for _, m := range mutate {
		m(cfg)
	}
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zapcore.DebugLevel)
	r.tel = componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, r.tel.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(r.tel)
	set.Logger = zap.New(core)
	r.logs = logs
	var err error
	r.s, err = newGPUScraper(cfg, srv, set)
	require.NoError(t, err)
	return r
}

func (r *rig) start(t *testing.T) {
	require.NoError(t, r.s.start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, r.s.shutdown(context.Background())) })
}

func (r *rig) scrape(t *testing.T) pmetric.Metrics {
	md, err := r.s.scrape(context.Background())
	require.NoError(t, err)
	return md
}

// values returns name's data points on GPU resource i as attribute-key -> value ("" when no attributes).
func values(t *testing.T, md pmetric.Metrics, i int, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	ms := md.ResourceMetrics().At(i).ScopeMetrics().At(0).Metrics()
	for k := 0; k < ms.Len(); k++ {
		m := ms.At(k)
		if m.Name() != name {
			continue
		}
		var dps pmetric.NumberDataPointSlice
		if m.Type() == pmetric.MetricTypeSum {
			dps = m.Sum().DataPoints()
		} else {
			dps = m.Gauge().DataPoints()
		}
		for j := 0; j < dps.Len(); j++ {
			key := ""
			for k, v := range dps.At(j).Attributes().All() {
				key += k + "=" + v.AsString() + ";"
			}
			out[key] = dps.At(j).DoubleValue()
		}
	}
	return out
}

func single(t *testing.T, md pmetric.Metrics, i int, name string) float64 {
	t.Helper()
	v := values(t, md, i, name)
	require.Len(t, v, 1, name)
	for _, x := range v {
		return x
	}
	return 0
}

func TestEveryFamilyOnH100(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	st := r.states[0]
	st.samples = []nvml.Sample{uintSample(10, 40), uintSample(20, 60)}
	first := r.scrape(t)
	assert.InDelta(t, 0.5, single(t, first, 0, schema.MetricHwGPUUtilization), 1e-9)
	assert.Empty(t, values(t, first, 0, schema.MetricNvidiaGPUSmActivity), "one GPM sample is not an interval yet")
	st.samples = append(st.samples, uintSample(30, 90), uintSample(40, 100))
	md := r.scrape(t) // GPM needs two samples; utilization must cover only the new interval
	require.Equal(t, 8, md.ResourceMetrics().Len())

	dev := r.srv.Devices[0].(*server.Device)
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, dev.UUID, res[schema.AttrHwID])
	assert.Contains(t, res[schema.AttrHwName], "H100")
	assert.Equal(t, "nvidia", res[schema.AttrHwVendor])
	assert.EqualValues(t, 0, res[schema.AttrNvidiaGPUIndex])
	assert.Equal(t, "550.54.15", res[schema.AttrNvidiaDriverVersion])

	assert.InDelta(t, 0.95, single(t, md, 0, schema.MetricHwGPUUtilization), 1e-9, "mean of the samples since the last scrape")
	mem := dev.MemoryInfo
	assert.Equal(t, float64(mem.Used), single(t, md, 0, schema.MetricHwGPUMemoryUsage))
	assert.Equal(t, float64(mem.Total), single(t, md, 0, schema.MetricHwGPUMemoryLimit))
	assert.InDelta(t, float64(mem.Used)/float64(mem.Total), single(t, md, 0, schema.MetricHwGPUMemoryUtilization), 1e-12)
	assert.Equal(t, 312.5, single(t, md, 0, schema.MetricHwPower))
	assert.Equal(t, 700.0, single(t, md, 0, schema.MetricNvidiaGPUPowerLimit))
	assert.Equal(t, 9876.543, single(t, md, 0, schema.MetricHwEnergy))
	assert.Equal(t, 61.0, single(t, md, 0, schema.MetricHwTemperature))
	assert.Equal(t, map[string]float64{"nvidia.gpu.clock.type=sm;": 1980e6, "nvidia.gpu.clock.type=memory;": 2619e6},
		values(t, md, 0, schema.MetricNvidiaGPUClockFrequency))
	assert.Len(t, values(t, md, 0, schema.MetricNvidiaGPUClockThrottled), len(throttleReasons))
	assert.Equal(t, map[string]float64{
		"error.type=ecc_corrected;": 3, "error.type=ecc_uncorrected;": 0,
		"error.type=pcie_replay;": 2, "error.type=xid;": 0, "error.type=nvlink_crc;": 0,
	}, values(t, md, 0, schema.MetricHwErrors))
	assert.Equal(t, map[string]float64{"nvidia.gpu.remap.cause=correctable;": 1, "nvidia.gpu.remap.cause=uncorrectable;": 0},
		values(t, md, 0, schema.MetricNvidiaGPUMemoryRemappedRows))
	assert.Equal(t, map[string]float64{"network.io.direction=transmit;": 1000 * 1024, "network.io.direction=receive;": 2000 * 1024},
		values(t, md, 0, schema.MetricNvidiaGPUPcieThroughput))
	assert.Equal(t, map[string]float64{"network.io.direction=transmit;": 300 * 1024, "network.io.direction=receive;": 700 * 1024},
		values(t, md, 0, schema.MetricNvidiaGPUNvlinkIo), "all links summed, KiB to bytes")
	assert.Equal(t, 2, st.calls["fields"], "NVLink counters come from one batched field-value call per scrape")
	assert.InDelta(t, 0.80, single(t, md, 0, schema.MetricNvidiaGPUSmActivity), 1e-12, "GPM over the interval between two scrapes")
	assert.InDelta(t, 0.40, single(t, md, 0, schema.MetricNvidiaGPUSmOccupancy), 1e-12)
	assert.InDelta(t, 0.55, single(t, md, 0, schema.MetricNvidiaGPUTensorActivity), 1e-12)
	assert.InDelta(t, 0.90, single(t, md, 0, schema.MetricNvidiaGPUDramActivity), 1e-12)

	// Counters carry a start time; gauges do not.
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for k := 0; k < ms.Len(); k++ {
		if ms.At(k).Name() == schema.MetricHwEnergy {
			assert.NotZero(t, ms.At(k).Sum().DataPoints().At(0).StartTimestamp())
			assert.Equal(t, "J", ms.At(k).Unit())
		}
	}
	assert.Zero(t, r.logs.FilterLevelExact(zapcore.WarnLevel).Len(), "a healthy node logs no warning")
}

func TestUtilizationFallsBackToTheRateWithoutSamples(t *testing.T) {
	r := newRig(t, dgxa100.New())
	for _, st := range r.states {
		st.gpm = nil // Ampere has no GPM
	}
	r.start(t)
	r.states[0].utilRate = 7
	r.scrape(t) // reads the samples NVML holds; the next scrape finds none newer
	md := r.scrape(t)
	assert.InDelta(t, 0.07, single(t, md, 0, schema.MetricHwGPUUtilization), 1e-12)
	assert.Empty(t, values(t, md, 0, schema.MetricNvidiaGPUSmActivity), "no GPM below Hopper")
}

func TestMemoryLeavesOutDriverReservedMemoryWhereTheDriverSaysHowMuch(t *testing.T) {
	r := newRig(t, dgxh100.New())
	// The figures an idle H100 with driver 580 gave: v1 counts the driver's reservation as used, v2 does not.
	const mib = 1 << 20
	r.states[0].memV2 = &nvml.Memory_v2{Total: 81559 * mib, Reserved: 480 * mib, Used: 0, Free: 81079 * mib}
	r.start(t)
	md := r.scrape(t)
	assert.Equal(t, 0.0, single(t, md, 0, schema.MetricHwGPUMemoryUsage), "what nvidia-smi shows as used")
	assert.Equal(t, float64(81559*mib), single(t, md, 0, schema.MetricHwGPUMemoryLimit))

	// A driver without the v2 query: the v1 figure, asked once for v2 and never again, nothing logged.
	dev := r.srv.Devices[1].(*server.Device)
	md = r.scrape(t)
	assert.Equal(t, float64(dev.MemoryInfo.Used), single(t, md, 1, schema.MetricHwGPUMemoryUsage))
	assert.Equal(t, 1, r.states[1].calls["memory_v2"])
	assert.Empty(t, r.logs.FilterMessageSnippet("not supported").All())
}

func TestThrottleReasons(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	r.states[0].throttle = nvml.ClocksEventReasonSwThermalSlowdown | nvml.ClocksThrottleReasonHwSlowdown
	got := values(t, r.scrape(t), 0, schema.MetricNvidiaGPUClockThrottled)
	for _, reason := range throttleReasons {
		want := 0.0
		if reason.name == "sw_thermal" || reason.name == "hw_slowdown" {
			want = 1
		}
		assert.Equal(t, want, got["nvidia.gpu.throttle.reason="+reason.name+";"], reason.name)
	}
}

func TestUnsupportedQueryIsDisabledForThatGPUOnly(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	r.states[0].unsupported["power"] = true
	var md pmetric.Metrics
	for range 3 {
		md = r.scrape(t)
	}
	assert.Empty(t, values(t, md, 0, schema.MetricHwPower))
	assert.Equal(t, 1, r.states[0].calls["power"], "not asked again")
	assert.Equal(t, 312.5, single(t, md, 1, schema.MetricHwPower), "the other GPUs still report it")
	assert.NotEmpty(t, values(t, md, 0, schema.MetricHwTemperature), "the other queries of that GPU still run")
	warnings := r.logs.FilterMessageSnippet("not supported").All()
	require.Len(t, warnings, 1)
	assert.Equal(t, "power", warnings[0].ContextMap()["query"])
}

func TestGPUThatDisappears(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	require.Equal(t, 8, r.scrape(t).ResourceMetrics().Len())
	r.srv.Devices = r.srv.Devices[:7] // fell off the bus
	assert.Equal(t, 7, r.scrape(t).ResourceMetrics().Len())
	assert.Equal(t, 7, r.scrape(t).ResourceMetrics().Len())
	assert.Equal(t, 1, r.logs.FilterMessageSnippet("GPU disappeared").Len())

	// A GPU that NVML reports lost mid-scrape is dropped the same way.
	r.srv.Devices[3].(*server.Device).GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		return 0, nvml.ERROR_GPU_IS_LOST
	}
	assert.Equal(t, 7, r.scrape(t).ResourceMetrics().Len(), "what the GPU said before it was lost still goes out")
	for range 3 {
		assert.Equal(t, 6, r.scrape(t).ResourceMetrics().Len(), "a lost GPU is not rediscovered")
	}
	assert.Equal(t, 2, r.logs.FilterMessageSnippet("GPU disappeared").Len(), "once per GPU")
	metadatatest.AssertEqualNvmlGpusLost(t, r.tel, []metricdata.DataPoint[int64]{{Value: 2, Attributes: attribute.NewSet(
		attribute.String("receiver", r.s.set.ID.String()))}}, metricdatatest.IgnoreTimestamp())
}

// A query that fails (other than not being supported) is retried every scrape, logged once and counted
// each time in the receiver's own telemetry.
func TestFailingQueryIsCountedEachScrape(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	r.states[0].failing["power"] = true
	var md pmetric.Metrics
	for range 3 {
		md = r.scrape(t)
	}
	assert.Empty(t, values(t, md, 0, schema.MetricHwPower))
	assert.Equal(t, 3, r.states[0].calls["power"], "asked again every scrape")
	assert.Equal(t, 1, r.logs.FilterMessageSnippet("GPU query failed").Len())
	metadatatest.AssertEqualNvmlQueryFailures(t, r.tel, []metricdata.DataPoint[int64]{{Value: 3, Attributes: attribute.NewSet(
		attribute.String("query", "power"), attribute.String("receiver", r.s.set.ID.String()))}}, metricdatatest.IgnoreTimestamp())
}

// GPM samples are freed when a GPU goes and at shutdown: none leak.
func TestGPMSamplesAreFreed(t *testing.T) {
	r := newRig(t, dgxh100.New())
	var allocated, freed int
	r.srv.GpmSampleAllocFunc = func() (nvml.GpmSample, nvml.Return) {
		allocated++
		return &mock.GpmSample{FreeFunc: func() nvml.Return { freed++; return nvml.SUCCESS }}, nvml.SUCCESS
	}
	require.NoError(t, r.s.start(context.Background(), componenttest.NewNopHost()))
	r.scrape(t)
	r.srv.Devices[2].(*server.Device).GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
	for range 3 {
		r.scrape(t)
	}
	require.NoError(t, r.s.shutdown(context.Background()))
	assert.Equal(t, 16, allocated, "two per GPU, once")
	assert.Equal(t, allocated, freed)
}

func TestXIDStormLogsEachCodeOnce(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	r.scrape(t)
	for range 50 {
		r.events = append(r.events, nvml.EventData{Device: r.srv.Devices[0], EventType: nvml.EventTypeXidCriticalError, EventData: 31})
	}
	md := r.scrape(t)
	assert.Equal(t, 50.0, values(t, md, 0, schema.MetricHwErrors)["error.type=xid;"])
	assert.Equal(t, 1, r.logs.FilterMessageSnippet("XID").Len())
}

func TestUnavailableProcessMemoryIsSkipped(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	r.states[0].procs = []nvml.ProcessInfo{{Pid: 1, UsedGpuMemory: math.MaxUint64}, {Pid: 2, UsedGpuMemory: 1 << 30}}
	assert.Equal(t, map[string]float64{"process.pid=2;": 1 << 30}, values(t, r.scrape(t), 0, schema.MetricNvidiaGPUProcessMemoryUsage))
}

func TestAttributionWithoutValidate(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 7, "python3\x00-m\x00sglang.launch_server\x00", "0::/x", 30000)
	fakeProc(t, root, 8, "other\x00", "0::/x", 1)
	a := newAttributor(root, []ReplicaRule{{ProcessName: `sglang`, ServiceInstanceID: "s"}})
	_, ok := a.resolve(8)
	assert.False(t, ok, "an unvalidated process_name rule still matches only its processes")
	r, ok := a.resolve(7)
	assert.True(t, ok)
	assert.Equal(t, "s", r.instance)
}

func TestNoDriverNoGPU(t *testing.T) {
	t.Run("library missing", func(t *testing.T) {
		srv := dgxh100.New()
		srv.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
		r := newRig(t, srv)
		require.NoError(t, r.s.start(context.Background(), componenttest.NewNopHost()))
		for range 3 {
			assert.Zero(t, r.scrape(t).ResourceMetrics().Len())
		}
		require.NoError(t, r.s.shutdown(context.Background()))
		assert.Equal(t, 1, r.logs.FilterMessageSnippet("NVML library not found").Len())
	})
	t.Run("library missing and required", func(t *testing.T) {
		srv := dgxh100.New()
		srv.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
		r := newRig(t, srv, func(c *Config) { c.Required = true })
		assert.ErrorContains(t, r.s.start(context.Background(), componenttest.NewNopHost()), "required is set")
	})
	t.Run("no GPUs", func(t *testing.T) {
		srv := dgxh100.NewWithGPUs()
		r := newRig(t, srv)
		r.start(t)
		assert.Zero(t, r.scrape(t).ResourceMetrics().Len())
		assert.Equal(t, 1, r.logs.FilterMessageSnippet("no GPUs").Len())
	})
}

func TestXIDEventsAreCounted(t *testing.T) {
	r := newRig(t, dgxh100.New())
	r.start(t)
	r.scrape(t)
	r.events = []nvml.EventData{{Device: r.srv.Devices[2], EventType: nvml.EventTypeXidCriticalError, EventData: 79}}
	md := r.scrape(t)
	assert.Equal(t, 1.0, values(t, md, 2, schema.MetricHwErrors)["error.type=xid;"])
	assert.Equal(t, 0.0, values(t, md, 0, schema.MetricHwErrors)["error.type=xid;"])
	entries := r.logs.FilterMessageSnippet("XID").All()
	require.Len(t, entries, 1)
	assert.EqualValues(t, 79, entries[0].ContextMap()["xid"])
}

// fakeProc writes a /proc entry: command line, cgroup, and listening sockets.
func fakeProc(t *testing.T, root string, pid int, cmdline, cgroup string, listenPort int) {
	dir := filepath.Join(root, fmt.Sprint(pid))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "net"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644))
	inode := 40000 + pid
	require.NoError(t, os.Symlink(fmt.Sprintf("socket:[%d]", inode), filepath.Join(dir, "fd", "7")))
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		fmt.Sprintf("   0: 00000000:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n", listenPort, inode) +
		fmt.Sprintf("   1: 0100007F:%04X 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n", listenPort+1, inode+1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte(tcp), 0o644))
}

func TestProcessAttribution(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 4242, "python3\x00-m\x00vllm.entrypoints.openai.api_server\x00--port\x008000\x00", "0::/kubepods/pod-abc/cri-containerd-1", 8000)
	fakeProc(t, root, 5151, "python3\x00-m\x00sglang.launch_server\x00", "0::/kubepods/pod-def/cri-containerd-2", 30000)
	fakeProc(t, root, 6161, "some-other-job\x00", "0::/user.slice", 9999)
	r := newRig(t, dgxh100.New(), func(c *Config) {
		c.ProcRoot = root
		c.Replicas = []ReplicaRule{
			{Port: 8000, ServiceInstanceID: "vllm-0:8000", Engine: "vllm"},
			{ProcessName: `sglang\.launch_server`, CgroupContains: "pod-def", ServiceInstanceID: "sglang-0:30000"},
		}
	})
	r.start(t)
	r.states[0].procs = []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 70 << 30}}
	r.states[0].procUtil = []nvml.ProcessUtilizationSample{{Pid: 4242, TimeStamp: 5, SmUtil: 85}}
	r.states[1].procs = []nvml.ProcessInfo{{Pid: 5151, UsedGpuMemory: 10 << 30}, {Pid: 6161, UsedGpuMemory: 1 << 30}}
	md := r.scrape(t)

	assert.Equal(t, map[string]float64{"process.pid=4242;service.instance.id=vllm-0:8000;llm.engine.name=vllm;": 70 << 30},
		values(t, md, 0, schema.MetricNvidiaGPUProcessMemoryUsage))
	assert.Equal(t, map[string]float64{"process.pid=4242;service.instance.id=vllm-0:8000;llm.engine.name=vllm;": 0.85},
		values(t, md, 0, schema.MetricNvidiaGPUProcessSmUtilization))
	res0 := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	assert.Equal(t, "vllm-0:8000", res0[schema.AttrServiceInstanceID], "a GPU owned by one replica carries it")
	assert.Equal(t, "vllm", res0[schema.AttrLLMEngineName])

	assert.Equal(t, map[string]float64{
		"process.pid=5151;service.instance.id=sglang-0:30000;": 10 << 30,
		"process.pid=6161;": 1 << 30,
	}, values(t, md, 1, schema.MetricNvidiaGPUProcessMemoryUsage))
	res1 := md.ResourceMetrics().At(1).Resource().Attributes().AsRaw()
	assert.Equal(t, "sglang-0:30000", res1[schema.AttrServiceInstanceID], "unattributed processes do not make a second owner")

	// The same utilization sample is not reported twice.
	assert.Empty(t, values(t, r.scrape(t), 0, schema.MetricNvidiaGPUProcessSmUtilization))
}

func TestMIGInstances(t *testing.T) {
	srv := dgxa100.New()
	r := newRig(t, srv)
	d := srv.Devices[0].(*server.Device)
	d.MigMode = nvml.DEVICE_MIG_ENABLE
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 2, nvml.SUCCESS }
	d.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 1 {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return &mock.Device{
			GetGpuInstanceIdFunc: func() (int, nvml.Return) { return 7, nvml.SUCCESS },
			GetMemoryInfoFunc:    func() (nvml.Memory, nvml.Return) { return nvml.Memory{Used: 5 << 30}, nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	r.start(t)
	md := r.scrape(t)
	assert.Equal(t, map[string]float64{"nvidia.gpu.mig.instance=7;": 5 << 30}, values(t, md, 0, schema.MetricNvidiaGPUMigMemoryUsage))
	assert.Empty(t, values(t, md, 1, schema.MetricNvidiaGPUMigMemoryUsage))
}

// Through the factory and the scraper controller, with the mock library injected.
func TestReceiverLifecycle(t *testing.T) {
	srv := dgxh100.New()
	newRig(t, srv) // arms the mock's functions
	f := newFactory(func(*Config) nvml.Interface { return srv })
	cfg := f.CreateDefaultConfig().(*Config)
	require.NoError(t, componenttest.CheckConfigStruct(cfg))
	rcv, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, nil)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, rcv.Shutdown(context.Background()))
}
