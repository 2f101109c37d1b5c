// Package fleetstatetest builds canonical metrics, as llm_normalize and the nvml receiver emit them, for
// tests of the components that read replica state.
package fleetstatetest

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// Epoch is the time scenarios count seconds from.
var Epoch = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// At is Epoch plus sec seconds, in unix ns.
func At(sec float64) int64 { return Epoch.Add(time.Duration(sec * float64(time.Second))).UnixNano() }

// counters are the canonical metrics in Engine that are cumulative sums.
var counters = map[string]bool{
	schema.MetricLLMSchedulerPreemptions: true, schema.MetricLLMPrefixCacheQueries: true, schema.MetricLLMPrefixCacheHits: true,
	schema.MetricLLMRequestsFinished: true, schema.MetricLLMTokensPrompt: true, schema.MetricLLMTokensGeneration: true,
}

// Engine is one replica's canonical scrape at sec seconds: values by canonical metric name, each one data
// point labelled with the model.
func Engine(replica, model string, sec float64, values map[string]float64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, replica)
	rm.Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineVLLM)
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for name, v := range values {
		m := ms.AppendEmpty()
		m.SetName(name)
		var dp pmetric.NumberDataPoint
		if counters[name] {
			dp = m.SetEmptySum().DataPoints().AppendEmpty()
		} else {
			dp = m.SetEmptyGauge().DataPoints().AppendEmpty()
		}
		dp.SetTimestamp(pcommon.Timestamp(At(sec)))
		dp.SetDoubleValue(v)
		dp.Attributes().PutStr(schema.AttrGenAIRequestModel, model)
	}
	return md
}

// WithTTFT adds the engine's cumulative time-to-first-token histogram (sum in seconds, count) to a scrape
// made by Engine.
func WithTTFT(md pmetric.Metrics, sum float64, count uint64) pmetric.Metrics {
	rm := md.ResourceMetrics().At(0)
	var ts pcommon.Timestamp
	if ms := rm.ScopeMetrics().At(0).Metrics(); ms.Len() > 0 {
		if ms.At(0).Type() == pmetric.MetricTypeSum {
			ts = ms.At(0).Sum().DataPoints().At(0).Timestamp()
		} else {
			ts = ms.At(0).Gauge().DataPoints().At(0).Timestamp()
		}
	}
	m := rm.ScopeMetrics().At(0).Metrics().AppendEmpty()
	m.SetName(schema.MetricGenAIServerTimeToFirstToken)
	dp := m.SetEmptyHistogram().DataPoints().AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetSum(sum)
	dp.SetCount(count)
	return md
}

// GPUState is one GPU scrape, for GPUWith.
type GPUState struct {
	ID, Name, Owner   string
	Utilization       float64
	MemoryUtilization float64 // 0: not reported
	Throttle          []string
	XIDErrors         float64
	ProcessOwners     []string
	SMClockHz         float64 // 0: not reported
	// Placed: the nvml receiver's topology placed the GPU at TPRank in pipeline stage PPStage of Group.
	Placed          bool
	TPRank, PPStage int
	Group           string
}

// GPUWith is GPU with a GPU's product name and memory utilization too.
func GPUWith(sec float64, g GPUState) pmetric.Metrics {
	md := GPU(g.ID, g.Owner, sec, g.Utilization, g.Throttle, g.XIDErrors, g.ProcessOwners...)
	rm := md.ResourceMetrics().At(0)
	if g.Name != "" {
		rm.Resource().Attributes().PutStr(schema.AttrHwName, g.Name)
	}
	if g.Placed {
		rm.Resource().Attributes().PutInt(schema.AttrLLMParallelTpRank, int64(g.TPRank))
		rm.Resource().Attributes().PutInt(schema.AttrLLMParallelPpRank, int64(g.PPStage))
		if g.Group != "" {
			rm.Resource().Attributes().PutStr(schema.AttrLLMParallelGroup, g.Group)
		}
	}
	if g.SMClockHz > 0 {
		m := rm.ScopeMetrics().At(0).Metrics().AppendEmpty()
		m.SetName(schema.MetricNvidiaGPUClockFrequency)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(At(sec)))
		dp.SetDoubleValue(g.SMClockHz)
		dp.Attributes().PutStr(schema.AttrNvidiaGPUClockType, "sm")
	}
	if g.MemoryUtilization > 0 {
		m := rm.ScopeMetrics().At(0).Metrics().AppendEmpty()
		m.SetName(schema.MetricHwGPUMemoryUtilization)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(At(sec)))
		dp.SetDoubleValue(g.MemoryUtilization)
	}
	return md
}

// GPU is one GPU's scrape at sec seconds. owner, when set, is the replica on its resource; processOwners
// are replicas named by its processes' data points. throttle lists the reasons active (gpu_idle,
// hw_slowdown, sw_thermal are reported, the others as 0).
func GPU(id, owner string, sec, utilization float64, throttle []string, xidErrors float64, processOwners ...string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr(schema.AttrHwID, id)
	if owner != "" {
		rm.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, owner)
	}
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	point := func(name string) pmetric.NumberDataPoint {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(At(sec)))
		return dp
	}
	point(schema.MetricHwGPUUtilization).SetDoubleValue(utilization)
	for _, r := range []string{"gpu_idle", "hw_slowdown", "sw_thermal"} {
		dp := point(schema.MetricNvidiaGPUClockThrottled)
		dp.Attributes().PutStr(schema.AttrNvidiaGPUThrottleReason, r)
		dp.SetIntValue(0)
		for _, on := range throttle {
			if on == r {
				dp.SetIntValue(1)
			}
		}
	}
	dp := point(schema.MetricHwErrors)
	dp.Attributes().PutStr(schema.AttrErrorType, "xid")
	dp.SetDoubleValue(xidErrors)
	for _, o := range processOwners {
		dp := point(schema.MetricNvidiaGPUProcessMemoryUsage)
		dp.Attributes().PutStr(schema.AttrServiceInstanceID, o)
		dp.SetDoubleValue(1 << 30)
	}
	return md
}

// CollectiveRank is one rank's cumulative operation count and time, as the nccl receiver reports them.
type CollectiveRank struct {
	GPU              string
	PID              int64
	TPRank           int
	Operations       uint64
	OperationSeconds float64
}

// Collectives is the nccl receiver's output for one replica: per-rank operation times, cumulative arrival
// skew of its tensor-parallel communicator with the late rank named (LateRank -1: no skew series), and the
// observability gauge.
type Collectives struct {
	Replica      string
	Host         string // host.name of the ranks' processes (the collector's node), "" for none
	Communicator string
	Observable   bool
	Reason       string
	Ranks        []CollectiveRank
	Skews        uint64
	SkewSeconds  float64
	LateRank     int
}

// CollectivesAt is c as the nccl receiver emits it at sec seconds.
func CollectivesAt(sec float64, c Collectives) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ts := pcommon.Timestamp(At(sec))
	start := pcommon.Timestamp(Epoch.UnixNano())
	comm := c.Communicator
	if comm == "" {
		comm = "tp0"
	}
	histogram := func(rm pmetric.ResourceMetrics, name string, count uint64, sum float64) pmetric.HistogramDataPoint {
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(name)
		m.SetUnit("s")
		h := m.SetEmptyHistogram()
		h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		dp := h.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(ts)
		dp.SetCount(count)
		dp.SetSum(sum)
		dp.Attributes().PutStr(schema.AttrLLMCollectiveType, "AllReduce")
		dp.Attributes().PutStr(schema.AttrLLMCollectiveCommunicator, comm)
		dp.Attributes().PutInt(schema.AttrLLMCollectiveNranks, int64(len(c.Ranks)))
		return dp
	}
	for _, r := range c.Ranks {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, c.Replica)
		rm.Resource().Attributes().PutStr(schema.AttrHwID, r.GPU)
		if c.Host != "" {
			rm.Resource().Attributes().PutStr(schema.AttrHostName, c.Host)
		}
		dp := histogram(rm, schema.MetricLLMCollectiveDuration, r.Operations, r.OperationSeconds)
		dp.Attributes().PutInt(schema.AttrProcessPid, r.PID)
		dp.Attributes().PutInt(schema.AttrLLMCollectiveRank, int64(r.TPRank))
		dp.Attributes().PutInt(schema.AttrLLMParallelTpRank, int64(r.TPRank))
		if c.LateRank == r.TPRank {
			dp := histogram(rm, schema.MetricLLMCollectiveArrivalSkew, c.Skews, c.SkewSeconds)
			dp.Attributes().PutStr(schema.AttrLLMCollectiveSkewBasis, "timestamps")
			dp.Attributes().PutInt(schema.AttrLLMCollectiveLateRank, int64(r.TPRank))
			dp.Attributes().PutInt(schema.AttrLLMParallelTpRank, int64(r.TPRank))
		}
	}
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, c.Replica)
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(schema.MetricLLMCollectiveObservability)
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetIntValue(0)
	if c.Observable {
		dp.SetIntValue(1)
	}
	dp.Attributes().PutBool(schema.AttrLLMCollectiveObservable, c.Observable)
	dp.Attributes().PutStr(schema.AttrLLMCollectiveObservableReason, c.Reason)
	return md
}

// GPUPoints is dcgm-exporter's scrape as the stock prometheus receiver and llm_normalize deliver it: one
// resource named by the scrape target (target, e.g. "10.0.0.5:9400", as service.instance.id, which names no
// engine replica) and each GPU's utilization on a data point carrying its hw.id.
func GPUPoints(target string, sec float64, utilization map[string]float64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, target)
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(schema.MetricHwGPUUtilization)
	points := m.SetEmptyGauge().DataPoints()
	for id, u := range utilization {
		dp := points.AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(At(sec)))
		dp.SetDoubleValue(u)
		dp.Attributes().PutStr(schema.AttrHwID, id)
	}
	return md
}
