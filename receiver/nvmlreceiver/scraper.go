package nvmlreceiver

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/logonce"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/nvmlreceiver/internal/metadata"
)

// gpuScraper owns the NVML session. NVML calls are cheap (microseconds) and made from the scraper
// controller's single goroutine.
type gpuScraper struct {
	cfg      *Config
	lib      nvml.Interface
	set      receiver.Settings
	logger   *zap.Logger
	attr     *attributor
	enabled  bool // NVML initialized
	driver   string
	devices  map[string]*gpu // by UUID
	events   nvml.EventSet
	reported logonce.Set                   // one log line per problem
	lost     map[string]bool               // UUIDs NVML reported lost: not rediscovered until the collector restarts
	members  map[string]map[string]*member // replica -> GPU UUID -> when last attributed (topology.go)
	scrapes  uint64

	telemetry *metadata.TelemetryBuilder
	receiver  attribute.KeyValue       // the receiver's ID, on every self-metric
	lostAttrs metric.MeasurementOption // the same, built once for the GPUs-lost counter
}

// gpu is what the receiver remembers about one device between scrapes.
type gpu struct {
	uuid, name string
	index      int
	off        map[string]bool // queries this device does not support
	utilSince  uint64          // NVML timestamp of the last utilization sample consumed
	procSince  uint64
	gpmPrev    nvml.GpmSample
	gpmCur     nvml.GpmSample
	gpmOK      bool
	gpmPrimed  bool // gpmPrev holds a sample taken at the previous scrape
	xids       uint64
	lost       bool
	since      pcommon.Timestamp // discovery time: the start of this GPU's counters
}

func newGPUScraper(cfg *Config, lib nvml.Interface, set receiver.Settings) (*gpuScraper, error) {
	telemetry, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	receiverID := attribute.String("receiver", set.ID.String())
	return &gpuScraper{
		cfg: cfg, lib: lib, set: set, logger: set.Logger,
		attr: newAttributor(cfg.ProcRoot, cfg.Replicas), devices: map[string]*gpu{}, lost: map[string]bool{},
		members: map[string]map[string]*member{}, telemetry: telemetry, receiver: receiverID,
		lostAttrs: metric.WithAttributeSet(attribute.NewSet(receiverID)),
	}, nil
}

func (s *gpuScraper) once(key string, log func(string, ...zap.Field), msg string, fields ...zap.Field) {
	if s.reported.First(key) {
		log(msg, fields...)
	}
}

func (s *gpuScraper) start(context.Context, component.Host) error {
	if ret := s.lib.Init(); ret != nvml.SUCCESS {
		what := "NVML library not found: no NVIDIA driver on this node"
		if ret != nvml.ERROR_LIBRARY_NOT_FOUND {
			what = "NVML could not be initialized"
		}
		if s.cfg.Required {
			return fmt.Errorf("%s (%s); required is set", what, nvml.ErrorString(ret))
		}
		s.logger.Warn(what+"; GPU metrics are off, the rest of the collector runs on", zap.String("nvml", nvml.ErrorString(ret)))
		return nil
	}
	s.enabled = true
	if v, ret := s.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		s.driver = v
	}
	if n, ret := s.lib.DeviceGetCount(); ret == nvml.SUCCESS && n == 0 {
		if s.cfg.Required {
			return fmt.Errorf("no GPUs visible to NVML; required is set")
		}
		s.logger.Warn("no GPUs visible to NVML; GPU metrics stay empty until one appears")
	}
	if es, ret := s.lib.EventSetCreate(); ret == nvml.SUCCESS {
		s.events = es
	} else {
		s.logger.Debug("NVML event sets unavailable; XID errors are not counted", zap.String("nvml", nvml.ErrorString(ret)))
	}
	return nil
}

func (s *gpuScraper) shutdown(context.Context) error {
	if !s.enabled {
		return nil
	}
	for _, g := range s.devices {
		g.free()
	}
	if s.events != nil {
		_ = s.events.Free()
	}
	s.enabled = false
	if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %s", nvml.ErrorString(ret))
	}
	return nil
}

func (s *gpuScraper) scrape(context.Context) (pmetric.Metrics, error) {
	md := pmetric.NewMetrics()
	if !s.enabled {
		return md, nil
	}
	now := pcommon.NewTimestampFromTime(time.Now())
	count, ret := s.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		s.once("count", s.logger.Warn, "NVML could not count GPUs", zap.String("nvml", nvml.ErrorString(ret)))
		return md, nil
	}
	s.drainXIDs()
	seen := map[string]bool{}
	for i := 0; i < count; i++ {
		dev, ret := s.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			s.once(fmt.Sprintf("handle/%d", i), s.logger.Warn, "GPU unavailable; skipping it", zap.Int("index", i), zap.String("nvml", nvml.ErrorString(ret)))
			continue
		}
		uuid, ret := dev.GetUUID()
		if ret != nvml.SUCCESS {
			s.once(fmt.Sprintf("uuid/%d", i), s.logger.Warn, "GPU unavailable; skipping it", zap.Int("index", i), zap.String("nvml", nvml.ErrorString(ret)))
			continue
		}
		if s.lost[uuid] {
			continue
		}
		g := s.devices[uuid]
		if g == nil {
			g = s.discover(dev, uuid, i, now)
			s.devices[uuid] = g
		}
		seen[uuid] = true
		s.collect(dev, g, md.ResourceMetrics().AppendEmpty(), now)
	}
	for uuid, g := range s.devices {
		if !seen[uuid] || g.lost {
			s.logger.Warn("GPU disappeared (fell off the bus, lost, or unbound); its metrics stop until the collector restarts",
				zap.String("hw.id", uuid), zap.Int("index", g.index))
			s.telemetry.NvmlGpusLost.Add(context.Background(), 1, s.lostAttrs)
			g.free()
			delete(s.devices, uuid)
			if g.lost {
				s.lost[uuid] = true // it still enumerates but answers nothing: do not rediscover it every scrape
			}
		}
	}
	s.place(md)
	return md, nil
}

func (g *gpu) free() {
	for _, sample := range []nvml.GpmSample{g.gpmPrev, g.gpmCur} {
		if sample != nil {
			_ = sample.Free()
		}
	}
	g.gpmPrev, g.gpmCur, g.gpmOK = nil, nil, false
}

func (s *gpuScraper) discover(dev nvml.Device, uuid string, index int, now pcommon.Timestamp) *gpu {
	g := &gpu{uuid: uuid, index: index, off: map[string]bool{}, since: now}
	if name, ret := dev.GetName(); ret == nvml.SUCCESS {
		g.name = name
	}
	if s.events != nil {
		if ret := dev.RegisterEvents(nvml.EventTypeXidCriticalError, s.events); ret != nvml.SUCCESS {
			s.logger.Debug("XID events not available for this GPU", zap.String("hw.id", uuid), zap.String("nvml", nvml.ErrorString(ret)))
		}
	}
	if support, ret := dev.GpmQueryDeviceSupport(); ret == nvml.SUCCESS && support.IsSupportedDevice != 0 {
		prev, r1 := s.lib.GpmSampleAlloc()
		cur, r2 := s.lib.GpmSampleAlloc()
		g.gpmOK = r1 == nvml.SUCCESS && r2 == nvml.SUCCESS
		g.gpmPrev, g.gpmCur = prev, cur
	}
	return g
}

// drainXIDs counts the XID events that arrived since the last scrape, without waiting for more.
func (s *gpuScraper) drainXIDs() {
	if s.events == nil {
		return
	}
	for range 1024 { // bounded: an XID storm must not stall the scrape
		data, ret := s.events.Wait(0)
		if ret != nvml.SUCCESS {
			return
		}
		uuid, ret := data.Device.GetUUID()
		if ret != nvml.SUCCESS {
			continue
		}
		if g := s.devices[uuid]; g != nil {
			g.xids++
		}
		// An XID storm repeats one code many times a second: say each code once per GPU; hw.errors counts all.
		s.once(fmt.Sprintf("xid/%s/%d", uuid, data.EventData), s.logger.Warn, "GPU reported an XID error (further ones with this code are counted in hw.errors, not logged)",
			zap.String("hw.id", uuid), zap.Uint64("xid", data.EventData))
	}
}

// ok says whether a query succeeded. A query the GPU does not support is switched off for that GPU with one
// warning; a lost GPU is dropped; anything else is logged once and retried next scrape.
func (s *gpuScraper) ok(g *gpu, query string, ret nvml.Return) bool {
	switch ret {
	case nvml.SUCCESS:
		return true
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NO_PERMISSION, nvml.ERROR_FUNCTION_NOT_FOUND:
		g.off[query] = true
		s.logger.Warn("GPU query not supported; not asked again for this GPU",
			zap.String("hw.id", g.uuid), zap.String("query", query), zap.String("nvml", nvml.ErrorString(ret)))
	case nvml.ERROR_GPU_IS_LOST:
		g.lost = true
	default:
		s.telemetry.NvmlQueryFailures.Add(context.Background(), 1, metric.WithAttributes(s.receiver, attribute.String("query", query)))
		s.once(g.uuid+"/"+query, s.logger.Warn, "GPU query failed; retrying every scrape",
			zap.String("hw.id", g.uuid), zap.String("query", query), zap.String("nvml", nvml.ErrorString(ret)))
	}
	return false
}

func (s *gpuScraper) want(g *gpu, query string) bool { return !g.off[query] && !g.lost }

// memoryInfo prefers the v2 query, whose "used" leaves out the memory the driver reserves for itself (about
// 480 MiB on an idle H100 with driver 580), so the figure matches nvidia-smi and what processes can allocate.
// Drivers without v2 get the v1 figure; the fallback is remembered per GPU and not logged, since v1 is fine.
func (s *gpuScraper) memoryInfo(dev nvml.Device, g *gpu) (used, total uint64, ret nvml.Return) {
	if !g.off["memory_v2"] {
		mem, ret := dev.GetMemoryInfo_v2()
		switch ret {
		case nvml.SUCCESS:
			return mem.Used, mem.Total, ret
		case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND, nvml.ERROR_ARGUMENT_VERSION_MISMATCH:
			g.off["memory_v2"] = true
		default:
			return 0, 0, ret
		}
	}
	mem, ret := dev.GetMemoryInfo()
	return mem.Used, mem.Total, ret
}

// points writes one resource's metrics, one metric per canonical name, each from its schema-generated builder.
type points struct {
	s      *gpuScraper
	ms     pmetric.MetricSlice
	byName map[string]pmetric.Metric
	now    pcommon.Timestamp
	start  pcommon.Timestamp // counters' start: when this receiver first saw the GPU
}

func (p *points) metric(name string) pmetric.Metric {
	if m, ok := p.byName[name]; ok {
		return m
	}
	builder, ok := canonical.Lookup(name)
	if !ok {
		panic("nvml receiver emits a metric the schema does not declare: " + name) // a programming error
	}
	m := builder.AppendMetric(p.ms)
	p.byName[name] = m
	return m
}

func (p *points) add(name string, value float64, attrs ...string) {
	m := p.metric(name)
	var dp pmetric.NumberDataPoint
	if m.Type() == pmetric.MetricTypeSum {
		dp = m.Sum().DataPoints().AppendEmpty()
		dp.SetStartTimestamp(p.start)
	} else {
		dp = m.Gauge().DataPoints().AppendEmpty()
	}
	dp.SetTimestamp(p.now)
	dp.SetDoubleValue(value)
	for i := 0; i+1 < len(attrs); i += 2 {
		dp.Attributes().PutStr(attrs[i], attrs[i+1])
	}
}

var throttleReasons = []struct {
	bit  uint64
	name string
}{
	{nvml.ClocksEventReasonGpuIdle, "gpu_idle"},
	{nvml.ClocksEventReasonApplicationsClocksSetting, "applications_clocks"},
	{nvml.ClocksEventReasonSwPowerCap, "sw_power_cap"},
	{nvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
	{nvml.ClocksEventReasonSyncBoost, "sync_boost"},
	{nvml.ClocksEventReasonSwThermalSlowdown, "sw_thermal"},
	{nvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal"},
	{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake"},
	{nvml.ClocksEventReasonDisplayClockSetting, "display_clock"},
}

func (s *gpuScraper) collect(dev nvml.Device, g *gpu, rm pmetric.ResourceMetrics, now pcommon.Timestamp) {
	res := rm.Resource().Attributes()
	res.PutStr(schema.AttrHwID, g.uuid)
	res.PutStr(schema.AttrHwName, g.name)
	res.PutStr(schema.AttrHwVendor, "nvidia")
	res.PutInt(schema.AttrNvidiaGPUIndex, int64(g.index))
	if s.driver != "" {
		res.PutStr(schema.AttrNvidiaDriverVersion, s.driver)
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	sm.Scope().SetVersion(s.set.BuildInfo.Version)
	p := &points{s: s, ms: sm.Metrics(), byName: map[string]pmetric.Metric{}, now: now, start: g.since}

	s.utilization(dev, g, p)
	if s.want(g, "memory") {
		if used, total, ret := s.memoryInfo(dev, g); s.ok(g, "memory", ret) {
			p.add(schema.MetricHwGPUMemoryUsage, float64(used))
			p.add(schema.MetricHwGPUMemoryLimit, float64(total))
			if total > 0 {
				p.add(schema.MetricHwGPUMemoryUtilization, float64(used)/float64(total))
			}
		}
	}
	if s.want(g, "power") {
		if mw, ret := dev.GetPowerUsage(); s.ok(g, "power", ret) {
			p.add(schema.MetricHwPower, float64(mw)/1000)
		}
	}
	if s.want(g, "power_limit") {
		if mw, ret := dev.GetEnforcedPowerLimit(); s.ok(g, "power_limit", ret) {
			p.add(schema.MetricNvidiaGPUPowerLimit, float64(mw)/1000)
		}
	}
	if s.want(g, "energy") {
		if mj, ret := dev.GetTotalEnergyConsumption(); s.ok(g, "energy", ret) {
			p.add(schema.MetricHwEnergy, float64(mj)/1000)
		}
	}
	if s.want(g, "temperature") {
		if c, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU); s.ok(g, "temperature", ret) {
			p.add(schema.MetricHwTemperature, float64(c))
		}
	}
	for _, clock := range []struct {
		t    nvml.ClockType
		name string
	}{{nvml.CLOCK_SM, "sm"}, {nvml.CLOCK_MEM, "memory"}} {
		q := "clock_" + clock.name
		if s.want(g, q) {
			if mhz, ret := dev.GetClockInfo(clock.t); s.ok(g, q, ret) {
				p.add(schema.MetricNvidiaGPUClockFrequency, float64(mhz)*1e6, schema.AttrNvidiaGPUClockType, clock.name)
			}
		}
	}
	if s.want(g, "throttle") {
		if mask, ret := dev.GetCurrentClocksEventReasons(); s.ok(g, "throttle", ret) {
			for _, r := range throttleReasons {
				v := 0.0
				if mask&r.bit != 0 {
					v = 1
				}
				p.add(schema.MetricNvidiaGPUClockThrottled, v, schema.AttrNvidiaGPUThrottleReason, r.name)
			}
		}
	}
	s.errors(dev, g, p)
	s.io(dev, g, p)
	s.gpm(dev, g, p)
	s.processes(dev, g, p, res)
	s.mig(dev, g, p)
}

func (s *gpuScraper) utilization(dev nvml.Device, g *gpu, p *points) {
	if s.want(g, "utilization_samples") {
		vt, samples, ret := dev.GetSamples(nvml.GPU_UTILIZATION_SAMPLES, g.utilSince)
		if ret == nvml.SUCCESS || ret == nvml.ERROR_NOT_FOUND { // NOT_FOUND: no sample since the last one
			var sum float64
			var n int
			for _, sample := range samples {
				if sample.TimeStamp <= g.utilSince {
					continue
				}
				sum += sampleValue(vt, sample.SampleValue)
				n++
				g.utilSince = max(g.utilSince, sample.TimeStamp)
			}
			if n > 0 {
				p.add(schema.MetricHwGPUUtilization, sum/float64(n)/100, schema.AttrHwGPUTask, "general")
				return
			}
		} else {
			s.ok(g, "utilization_samples", ret)
		}
	}
	// No samples (first scrape, or sampling unsupported): NVML's own recent-window reading.
	if s.want(g, "utilization") {
		if u, ret := dev.GetUtilizationRates(); s.ok(g, "utilization", ret) {
			p.add(schema.MetricHwGPUUtilization, float64(u.Gpu)/100, schema.AttrHwGPUTask, "general")
		}
	}
}

func sampleValue(vt nvml.ValueType, raw [8]byte) float64 {
	switch vt {
	case nvml.VALUE_TYPE_DOUBLE:
		return math.Float64frombits(binary.LittleEndian.Uint64(raw[:]))
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return float64(binary.LittleEndian.Uint64(raw[:]))
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return float64(int64(binary.LittleEndian.Uint64(raw[:])))
	case nvml.VALUE_TYPE_SIGNED_INT:
		return float64(int32(binary.LittleEndian.Uint32(raw[:4])))
	default: // VALUE_TYPE_UNSIGNED_INT
		return float64(binary.LittleEndian.Uint32(raw[:4]))
	}
}

func (s *gpuScraper) errors(dev nvml.Device, g *gpu, p *points) {
	if s.want(g, "ecc") {
		corrected, ret := dev.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.AGGREGATE_ECC)
		if s.ok(g, "ecc", ret) {
			if uncorrected, ret := dev.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.AGGREGATE_ECC); s.ok(g, "ecc", ret) {
				p.add(schema.MetricHwErrors, float64(corrected), schema.AttrErrorType, "ecc_corrected")
				p.add(schema.MetricHwErrors, float64(uncorrected), schema.AttrErrorType, "ecc_uncorrected")
			}
		}
	}
	if s.want(g, "pcie_replay") {
		if n, ret := dev.GetPcieReplayCounter(); s.ok(g, "pcie_replay", ret) {
			p.add(schema.MetricHwErrors, float64(n), schema.AttrErrorType, "pcie_replay")
		}
	}
	if s.events != nil {
		p.add(schema.MetricHwErrors, float64(g.xids), schema.AttrErrorType, "xid")
	}
	if s.want(g, "remapped_rows") {
		if corr, unc, _, _, ret := dev.GetRemappedRows(); s.ok(g, "remapped_rows", ret) {
			p.add(schema.MetricNvidiaGPUMemoryRemappedRows, float64(corr), schema.AttrNvidiaGPURemapCause, "correctable")
			p.add(schema.MetricNvidiaGPUMemoryRemappedRows, float64(unc), schema.AttrNvidiaGPURemapCause, "uncorrectable")
		}
	}
}

func (s *gpuScraper) io(dev nvml.Device, g *gpu, p *points) {
	for _, d := range []struct {
		counter   nvml.PcieUtilCounter
		direction string
	}{{nvml.PCIE_UTIL_TX_BYTES, "transmit"}, {nvml.PCIE_UTIL_RX_BYTES, "receive"}} {
		if s.want(g, "pcie_throughput") {
			if kb, ret := dev.GetPcieThroughput(d.counter); s.ok(g, "pcie_throughput", ret) {
				p.add(schema.MetricNvidiaGPUPcieThroughput, float64(kb)*1024, schema.AttrNetworkIoDirection, d.direction)
			}
		}
	}
	if !s.want(g, "nvlink") {
		return
	}
	// One batched call for every link's TX and RX counters and the CRC error total.
	fields := make([]nvml.FieldValue, 0, 2*nvml.NVLINK_MAX_LINKS+1)
	for link := uint32(0); link < nvml.NVLINK_MAX_LINKS; link++ {
		fields = append(fields,
			nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ScopeId: link},
			nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ScopeId: link})
	}
	fields = append(fields, nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL})
	if !s.ok(g, "nvlink", dev.GetFieldValues(fields)) {
		return
	}
	var tx, rx, crc float64
	var throughputRead bool
	for _, f := range fields {
		if nvml.Return(f.NvmlReturn) != nvml.SUCCESS {
			continue
		}
		v := sampleValue(nvml.ValueType(f.ValueType), f.Value)
		switch f.FieldId {
		case nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
			tx, throughputRead = tx+v*1024, true // KiB
		case nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
			rx, throughputRead = rx+v*1024, true
		case nvml.FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL:
			crc = v
		}
	}
	if !throughputRead { // a PCIe-only card: every field unsupported
		s.ok(g, "nvlink", nvml.ERROR_NOT_SUPPORTED)
		return
	}
	p.add(schema.MetricNvidiaGPUNvlinkIo, tx, schema.AttrNetworkIoDirection, "transmit")
	p.add(schema.MetricNvidiaGPUNvlinkIo, rx, schema.AttrNetworkIoDirection, "receive")
	p.add(schema.MetricHwErrors, crc, schema.AttrErrorType, "nvlink_crc")
}

var gpmMetrics = []struct {
	id   nvml.GpmMetricId
	name string
}{
	{nvml.GPM_METRIC_SM_UTIL, schema.MetricNvidiaGPUSmActivity},
	{nvml.GPM_METRIC_SM_OCCUPANCY, schema.MetricNvidiaGPUSmOccupancy},
	{nvml.GPM_METRIC_ANY_TENSOR_UTIL, schema.MetricNvidiaGPUTensorActivity},
	{nvml.GPM_METRIC_DRAM_BW_UTIL, schema.MetricNvidiaGPUDramActivity},
}

// gpm reads the profile metrics over the interval between two GPM samples (Hopper and later).
func (s *gpuScraper) gpm(dev nvml.Device, g *gpu, p *points) {
	if !g.gpmOK || !s.want(g, "gpm") {
		return
	}
	if !s.ok(g, "gpm", s.lib.GpmSampleGet(dev, g.gpmCur)) {
		return
	}
	defer func() { g.gpmPrev, g.gpmCur, g.gpmPrimed = g.gpmCur, g.gpmPrev, true }()
	if !g.gpmPrimed { // the first sample only opens the interval
		return
	}
	get := &nvml.GpmMetricsGetType{Version: nvml.GPM_METRICS_GET_VERSION, NumMetrics: uint32(len(gpmMetrics)), Sample1: g.gpmPrev, Sample2: g.gpmCur}
	for i, m := range gpmMetrics {
		get.Metrics[i].MetricId = uint32(m.id)
	}
	if !s.ok(g, "gpm", s.lib.GpmMetricsGet(get)) {
		return
	}
	for i, m := range gpmMetrics {
		if nvml.Return(get.Metrics[i].NvmlReturn) == nvml.SUCCESS {
			p.add(m.name, get.Metrics[i].Value/100)
		}
	}
}

// processes reports GPU memory and SM use per PID, attributed to replicas; a GPU whose processes all belong
// to one replica carries that replica on its resource, so GPU metrics join with the engine's.
func (s *gpuScraper) processes(dev nvml.Device, g *gpu, p *points, res pcommon.Map) {
	if !s.want(g, "processes") {
		return
	}
	procs, ret := dev.GetComputeRunningProcesses()
	if !s.ok(g, "processes", ret) {
		return
	}
	owners := map[replica]bool{}
	attrsFor := func(pid uint32) []string {
		attrs := []string{schema.AttrProcessPid, fmt.Sprint(pid)}
		if r, ok := s.attr.resolve(pid); ok {
			owners[r] = true
			attrs = append(attrs, schema.AttrServiceInstanceID, r.instance)
			if r.engine != "" {
				attrs = append(attrs, schema.AttrLLMEngineName, r.engine)
			}
		}
		return attrs
	}
	for _, proc := range procs {
		if proc.UsedGpuMemory == math.MaxUint64 { // NVML_VALUE_NOT_AVAILABLE (e.g. Windows WDDM)
			attrsFor(proc.Pid) // still counts towards the GPU's owner
			continue
		}
		p.add(schema.MetricNvidiaGPUProcessMemoryUsage, float64(proc.UsedGpuMemory), attrsFor(proc.Pid)...)
	}
	if s.want(g, "process_utilization") {
		samples, ret := dev.GetProcessUtilization(g.procSince)
		if ret == nvml.SUCCESS {
			for _, u := range samples {
				if u.TimeStamp <= g.procSince {
					continue
				}
				p.add(schema.MetricNvidiaGPUProcessSmUtilization, float64(u.SmUtil)/100, attrsFor(u.Pid)...)
			}
			for _, u := range samples {
				g.procSince = max(g.procSince, u.TimeStamp)
			}
		} else if ret != nvml.ERROR_NOT_FOUND { // NOT_FOUND: no process ran since the last scrape
			s.ok(g, "process_utilization", ret)
		}
	}
	if len(owners) == 1 {
		for r := range owners {
			res.PutStr(schema.AttrServiceInstanceID, r.instance)
			if r.engine != "" {
				res.PutStr(schema.AttrLLMEngineName, r.engine)
			}
		}
	}
}

// mig reports memory per MIG instance where the GPU is partitioned; GPUs without MIG skip this quietly.
func (s *gpuScraper) mig(dev nvml.Device, g *gpu, p *points) {
	if !s.want(g, "mig") {
		return
	}
	current, _, ret := dev.GetMigMode()
	if ret != nvml.SUCCESS {
		g.off["mig"] = true
		s.logger.Debug("MIG mode not queryable on this GPU; MIG metrics skipped", zap.String("hw.id", g.uuid), zap.String("nvml", nvml.ErrorString(ret)))
		return
	}
	if current != nvml.DEVICE_MIG_ENABLE {
		return
	}
	n, ret := dev.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return
	}
	for i := 0; i < n; i++ {
		mig, ret := dev.GetMigDeviceHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue // an empty slot
		}
		gi, ret1 := mig.GetGpuInstanceId()
		mem, ret2 := mig.GetMemoryInfo()
		if ret1 == nvml.SUCCESS && ret2 == nvml.SUCCESS {
			p.add(schema.MetricNvidiaGPUMigMemoryUsage, float64(mem.Used), schema.AttrNvidiaGPUMigInstance, fmt.Sprint(gi))
		}
	}
}
