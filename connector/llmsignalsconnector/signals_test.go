package llmsignalsconnector

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadatatest"
	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/configtest"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/metricstest"
	"github.com/servescope/servescope/internal/schema"
)

const model = "llama-70b"

type rig struct {
	t       *testing.T
	metrics *consumertest.MetricsSink
	logs    *consumertest.LogsSink
	tel     *componenttest.Telemetry // the connector's own telemetry
	ins     []connector.Metrics
}

func newRig(t *testing.T, mutate ...func(*Config)) *rig {
	cfg := createDefaultConfig()
	cfg.Interval, cfg.Stale = 10*time.Second, 30*time.Second
	for _, m := range mutate {
		m(cfg)
	}
	require.NoError(t, cfg.Validate())
	r := &rig{t: t, metrics: &consumertest.MetricsSink{}, logs: &consumertest.LogsSink{}}
	f := NewFactory()
	r.tel = componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, r.tel.Shutdown(context.Background())) }) // after the shutdown below
	set := metadatatest.NewSettings(r.tel)
	mm, err := f.CreateMetricsToMetrics(context.Background(), set, cfg, r.metrics)
	require.NoError(t, err)
	ml, err := f.CreateMetricsToLogs(context.Background(), set, cfg, r.logs)
	require.NoError(t, err)
	r.ins = []connector.Metrics{mm, ml}
	for _, in := range r.ins {
		require.NoError(t, in.Start(context.Background(), componenttest.NewNopHost()))
	}
	t.Cleanup(func() {
		for _, in := range r.ins {
			require.NoError(t, in.Shutdown(context.Background()))
		}
	})
	return r
}

// feed hands md to both instances, as the collector's fan-out does.
func (r *rig) feed(md pmetric.Metrics) {
	for _, in := range r.ins {
		require.NoError(r.t, in.ConsumeMetrics(context.Background(), md))
	}
}

// replicaState is what a scenario says about one replica at one time.
type replicaState struct {
	values map[string]float64 // canonical engine metrics
	gpus   []fleetstatetest.GPUState
	ttft   *[2]float64 // cumulative sum, count
	silent bool        // no scrape at all
	// collectives is what the nccl receiver reports for the replica (cumulative); nil: no nccl receiver
	collectives *fleetstatetest.Collectives
	// resource is added to the engine's resource (what k8s_attributes would add at a gateway)
	resource map[string]string
}

func steady(sec float64) map[string]float64 {
	n := (sec + 600) / 10
	return map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting: 0, schema.MetricLLMSchedulerRequestsRunning: 16, schema.MetricLLMKVCacheUtilization: 0.4,
		schema.MetricLLMSchedulerPreemptions: 0, schema.MetricLLMPrefixCacheQueries: 1000 * n, schema.MetricLLMPrefixCacheHits: 700 * n,
		schema.MetricLLMRequestsFinished: 50 * n,
	}
}

// run scrapes every replica every 10 s from -600 s to until, with state(replica, sec) changing the steady one.
func (r *rig) run(replicas []string, until float64, state func(replica string, sec float64, s *replicaState)) {
	for sec := -600.0; sec <= until; sec += 10 {
		for _, rep := range replicas {
			s := &replicaState{values: steady(sec), gpus: []fleetstatetest.GPUState{{ID: "GPU-" + rep, Owner: rep, Utilization: 0.8, MemoryUtilization: 0.9}}}
			if state != nil {
				state(rep, sec, s)
			}
			if s.silent {
				continue
			}
			md := fleetstatetest.Engine(rep, model, sec, s.values)
			for k, v := range s.resource {
				for i := 0; i < md.ResourceMetrics().Len(); i++ {
					md.ResourceMetrics().At(i).Resource().Attributes().PutStr(k, v)
				}
			}
			if s.ttft != nil {
				fleetstatetest.WithTTFT(md, s.ttft[0], uint64(s.ttft[1]))
			}
			r.feed(md)
			if s.collectives != nil {
				r.feed(fleetstatetest.CollectivesAt(sec, *s.collectives))
			}
			for _, g := range s.gpus {
				r.feed(fleetstatetest.GPUWith(sec, g))
			}
		}
	}
}

type incidentLog struct {
	resource                           map[string]any
	detector, state, replica, id, body string
	actions                            []any
	evidence                           map[string]any
	at                                 float64
}

func (r *rig) incidents() []incidentLog {
	var out []incidentLog
	for _, ld := range r.logs.AllLogs() {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			recs := ld.ResourceLogs().At(i).ScopeLogs().At(0).LogRecords()
			for j := 0; j < recs.Len(); j++ {
				rec := recs.At(j)
				a := rec.Attributes().AsRaw()
				replica, _ := a[schema.AttrServiceInstanceID].(string) // pool-wide incidents name no replica
				il := incidentLog{
					resource: ld.ResourceLogs().At(i).Resource().Attributes().AsRaw(),
					detector: a[schema.AttrLLMIncidentDetector].(string), state: a[schema.AttrLLMIncidentState].(string),
					replica: replica, id: a[schema.AttrLLMIncidentID].(string), body: rec.Body().Str(),
					at: float64(rec.Timestamp().AsTime().Sub(fleetstatetest.Epoch)) / 1e9,
				}
				il.actions, _ = a[schema.AttrLLMIncidentActions].([]any)
				il.evidence, _ = a[evidenceAttribute].(map[string]any)
				out = append(out, il)
			}
		}
	}
	return out
}

// lastGauges reads metric name from the latest evaluation's output (every evaluation emits one batch).
func (r *rig) lastGauges(name string) map[string]float64 {
	out := map[string]float64{}
	all := r.metrics.AllMetrics()
	require.NotEmpty(r.t, all)
	for _, md := range all[len(all)-1:] {
		forEach(md, name, func(dp pmetric.NumberDataPoint) {
			a := dp.Attributes()
			key := attrvalue.String(a, schema.AttrServiceInstanceID)
			if key == "" {
				key = attrvalue.String(a, schema.AttrGenAIRequestModel)
			}
			for _, extra := range []string{schema.AttrLLMTenant, schema.AttrLLMTokenType, schema.AttrLLMHealthComponent, schema.AttrLLMScaleReason, schema.AttrLLMIncidentDetector} {
				if v := attrvalue.String(a, extra); v != "" {
					key += "/" + v
				}
			}
			out[key] = dp.DoubleValue()
		})
	}
	return out
}

// desired reads the latest desired replicas by "model/reason", the reason being the one the state-set gauge
// marks current; every reason is reported, exactly one of them as current.
func (r *rig) desired() map[string]float64 {
	reasons := r.lastGauges(schema.MetricLLMPoolScaleReason)
	out := map[string]float64{}
	for m, v := range r.lastGauges(schema.MetricLLMPoolDesiredReplicas) {
		current := 0
		for _, reason := range schema.ScaleReasonValues() {
			flag, ok := reasons[m+"/"+reason]
			require.True(r.t, ok, "reason %s of %s not reported", reason, m)
			if flag == 1 {
				current++
				out[m+"/"+reason] = v
			}
		}
		require.Equal(r.t, 1, current, "exactly one current reason for %s: %v", m, reasons)
	}
	return out
}

func forEach(md pmetric.Metrics, name string, fn func(pmetric.NumberDataPoint)) {
	for _, dp := range metricstest.Numbers(md, name) {
		fn(dp)
	}
}

// pipelined places r1 on two pipeline stages of two tensor-parallel GPUs each, every GPU at util.
func pipelined(util func(stage int) float64) []fleetstatetest.GPUState {
	var gpus []fleetstatetest.GPUState
	for stage := 0; stage < 2; stage++ {
		for rank := 0; rank < 2; rank++ {
			gpus = append(gpus, fleetstatetest.GPUState{
				ID: fmt.Sprintf("GPU-r1-pp%d-tp%d", stage, rank), Owner: "r1", Utilization: util(stage),
				MemoryUtilization: 0.9, Placed: true, TPRank: rank, PPStage: stage, Group: fmt.Sprintf("r1/dp0/pp%d", stage),
			})
		}
	}
	return gpus
}

// straggling is r1's tensor-parallel pair as the nccl receiver reports it: rank 0 waits 1% of its time for
// rank 1 at all-reduces until 100 s, then 40%.
func straggling(sec float64, observable bool) *fleetstatetest.Collectives {
	ops := uint64(200 * (sec + 600))
	skew := 0.01 * (sec + 600)
	if sec >= 100 {
		skew = 0.01*700 + 0.4*(sec-100)
	}
	return &fleetstatetest.Collectives{
		Replica: "r1", Observable: observable, Reason: map[bool]string{true: "records", false: "custom_all_reduce"}[observable],
		LateRank: 1, Skews: ops, SkewSeconds: skew,
		Ranks: []fleetstatetest.CollectiveRank{
			{GPU: "GPU-r1", PID: 10, TPRank: 0, Operations: ops, OperationSeconds: 0.0005*float64(ops) + skew},
			{GPU: "GPU-r1-b", PID: 11, TPRank: 1, Operations: ops, OperationSeconds: 0.0005 * float64(ops)},
		},
	}
}

// detectorScenario opens one detector's incident on r1 from 100 s on, with the evidence and an action it must
// carry.
type detectorScenario struct {
	detector string
	state    func(string, float64, *replicaState)
	evidence map[string]float64
	action   string
}

func detectorScenarios() []detectorScenario {
	// fromFault applies fn to r1 from second 100 on, where every scenario's fault starts.
	fromFault := func(fn func(s *replicaState)) func(string, float64, *replicaState) {
		return func(rep string, sec float64, s *replicaState) {
			if rep == "r1" && sec >= 100 {
				fn(s)
			}
		}
	}
	return []detectorScenario{
		{"scheduler_saturation", func(rep string, sec float64, s *replicaState) {
			if rep == "r1" && sec >= 100 {
				s.values[schema.MetricLLMSchedulerRequestsWaiting] = 5 * math.Pow(2, (sec-100)/30)
			}
		}, map[string]float64{}, "add replicas: the llama-70b pool needs"},
		{"kv_thrash", func(rep string, sec float64, s *replicaState) {
			if rep == "r1" && sec >= 100 {
				s.values[schema.MetricLLMKVCacheUtilization] = 0.98
				s.values[schema.MetricLLMSchedulerPreemptions] = (sec - 90) * 2
			}
		}, map[string]float64{"kv_utilization_max": 0.98, "preemptions": 20}, "increase the KV cache"},
		{"prefix_cache_collapse", fromFault(func(s *replicaState) {
			s.values[schema.MetricLLMPrefixCacheHits] = 700*70 + 1 // hits stop growing
		}), map[string]float64{"hit_ratio_usual": 0.66}, "prompt-template"},
		{"gpu_idle_while_waiting", fromFault(func(s *replicaState) {
			s.values[schema.MetricLLMSchedulerRequestsWaiting] = 3
			s.gpus[0].Utilization = 0.05
		}), map[string]float64{"gpu_utilization_mean": 0.05, "waiting": 3}, "scheduler's limits"},
		{"gpu_throttling", fromFault(func(s *replicaState) { s.gpus[0].Throttle = []string{"hw_slowdown"} }), nil, "cooling"},
		// dcgm-exporter's shape: no reasons, the SM clock of the busy GPU drops.
		{"gpu_throttling", func(rep string, sec float64, s *replicaState) {
			s.gpus[0].SMClockHz = 1980e6
			if rep == "r1" && sec >= 100 {
				s.gpus[0].SMClockHz = 600e6
			}
		}, map[string]float64{"sm_clock_ratio": 600.0 / 1980}, "cooling"},
		{
			"gpu_memory_pressure", fromFault(func(s *replicaState) { s.gpus[0].MemoryUtilization = 0.99 }),
			map[string]float64{"gpu_memory_utilization_max": 0.99},
			"out-of-memory",
		},
		{"gpu_memory_oom_risk", func(rep string, sec float64, s *replicaState) {
			if rep == "r1" && sec >= 100 {
				s.gpus[0].MemoryUtilization = math.Min(0.99, 0.9+(sec-90)/10*0.01) // a point every 10 s
			}
		}, map[string]float64{"growth_per_minute": 0.01}, "lower max-model-len"},
		{"gpu_errors", func(rep string, sec float64, s *replicaState) {
			if rep == "r1" && sec >= 100 {
				s.gpus[0].XIDErrors = (sec - 90) / 10
			}
		}, map[string]float64{"xid_errors": 1}, "reset or replace the GPU"},
		{"tp_imbalance", func(rep string, sec float64, s *replicaState) {
			if rep == "r1" {
				second := fleetstatetest.GPUState{ID: "GPU-r1-b", Owner: "r1", Utilization: 0.8, MemoryUtilization: 0.9}
				if sec >= 100 {
					second.Utilization = 0.35
				}
				s.gpus = append(s.gpus, second)
			}
		}, map[string]float64{"utilization_skew": 0.45}, "check GPU GPU-r1-b"},
		// Stages differ, the GPUs within each stage agree: a pipeline bubble, and no tensor-parallel imbalance.
		{"pipeline_bubble", func(rep string, sec float64, s *replicaState) {
			if rep == "r1" {
				s.gpus = pipelined(func(stage int) float64 {
					if stage == 1 && sec >= 100 {
						return 0.3
					}
					return 0.8
				})
			}
		}, map[string]float64{"stage_utilization_skew": 0.5, "idle_stage": 1, "busy_stage": 0, "stages": 2}, "stage 1 waits on stage 0"},
		{"collective_bottleneck", func(rep string, sec float64, s *replicaState) {
			if rep == "r1" {
				s.collectives = straggling(sec, true)
			}
		}, map[string]float64{"wait_share": 0.4, "skew_mean_seconds": 0.002, "late_rank_share": 1}, "check the GPU and host of tp rank 1, communicator tp0"},
		{"stale_telemetry", func(rep string, sec float64, s *replicaState) { s.silent = rep == "r1" && sec >= 100 }, nil, "metrics endpoint"},
		{"starvation", func(rep string, sec float64, s *replicaState) {
			n := (sec + 600) / 10 * 20 // 20 first tokens per 10 s at 0.2 s each...
			sum := n * 0.2
			if rep == "r1" && sec >= 100 { // ...then at 2 s each, with a queue
				sum = (700.0/10*20)*0.2 + (sec-100)/10*20*2
				s.values[schema.MetricLLMSchedulerRequestsWaiting] = 2
			}
			s.ttft = &[2]float64{sum, n}
		}, map[string]float64{"ttft_mean": 2}, "noisy tenant"},
	}
}

func TestDetectors(t *testing.T) {
	cases := detectorScenarios()
	for _, tc := range cases {
		t.Run(tc.detector, func(t *testing.T) {
			r := newRig(t)
			r.run([]string{"r1", "r2"}, 200, tc.state)
			// Memory that reaches 99% is both high and growing: the two memory detectors rightly open together.
			alsoOpens := map[string]string{"gpu_memory_pressure": "gpu_memory_oom_risk", "gpu_memory_oom_risk": "gpu_memory_pressure"}
			var starts []incidentLog
			for _, il := range r.incidents() {
				if il.state == "start" && il.detector != alsoOpens[tc.detector] {
					starts = append(starts, il)
				}
			}
			require.Len(t, starts, 1, "exactly one incident opens: %+v", starts)
			got := starts[0]
			assert.Equal(t, tc.detector, got.detector, got.body)
			assert.Equal(t, "r1", got.replica)
			assert.GreaterOrEqual(t, got.at, 100.0)
			for k, want := range tc.evidence {
				assert.InDelta(t, want, got.evidence[k], 0.02, k)
			}
			require.NotEmpty(t, got.actions)
			found := false
			for _, a := range got.actions {
				if s, _ := a.(string); contains(s, tc.action) {
					found = true
				}
			}
			assert.True(t, found, "an action mentions %q: %v", tc.action, got.actions)
			assert.Equal(t, 1.0, r.lastGauges(schema.MetricLLMIncidentActive)["r1/"+tc.detector])
		})
	}
}

// An incident names where its replica runs, as the replica's metrics said (on Kubernetes, what k8s_attributes
// added at the gateway): its pod, namespace and Ray cluster, and no other replica's.
func TestIncidentsNameTheReplicasPod(t *testing.T) {
	saturation := detectorScenarios()[0]
	require.Equal(t, "scheduler_saturation", saturation.detector)
	r := newRig(t)
	r.run([]string{"r1", "r2", "r3"}, 200, func(rep string, sec float64, s *replicaState) {
		saturation.state(rep, sec, s)
		switch rep {
		case "r1":
			s.resource = map[string]string{
				schema.AttrK8sPodName: "llm-raycluster-worker-gpu-7xk2p", schema.AttrK8sNamespaceName: "llm",
				schema.AttrRayClusterName: "llm-raycluster", schema.AttrRayNodeType: "worker",
				schema.AttrK8sPodIp: "10.4.0.17", // the association key, not a placement
			}
		case "r2":
			s.resource = map[string]string{schema.AttrK8sPodName: "llm-raycluster-worker-gpu-q9w4d", schema.AttrK8sNamespaceName: "llm"}
		}
		if rep == "r3" && sec >= 100 { // a replica whose metrics name no pod
			s.values[schema.MetricLLMSchedulerRequestsWaiting] = 5 * math.Pow(2, (sec-100)/30)
		}
	})
	byReplica := map[string]map[string]any{}
	for _, il := range r.incidents() {
		if il.state == "start" && il.detector == "scheduler_saturation" {
			byReplica[il.replica] = il.resource
		}
	}
	assert.Equal(t, map[string]map[string]any{
		"r1": {
			schema.AttrServiceInstanceID: "r1", schema.AttrK8sPodName: "llm-raycluster-worker-gpu-7xk2p",
			schema.AttrK8sNamespaceName: "llm", schema.AttrRayClusterName: "llm-raycluster", schema.AttrRayNodeType: "worker",
		},
		"r3": {schema.AttrServiceInstanceID: "r3"},
	}, byReplica)
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// Without evidence there is no incident: collective waiting where the receiver says collectives cannot be
// seen, and GPUs of different pipeline stages compared as one tensor-parallel group.
func TestParallelismDetectorsNeedTheirEvidence(t *testing.T) {
	r := newRig(t)
	r.run([]string{"r1"}, 200, func(_ string, sec float64, s *replicaState) {
		s.collectives = straggling(sec, false)
		// Stage 1 idles in both tensor-parallel groups alike (and unplaced GPUs are not compared with placed ones).
		s.gpus = append(pipelined(func(stage int) float64 { return 0.8 - 0.5*float64(stage) }), s.gpus...)
	})
	var opened []string
	for _, il := range r.incidents() {
		if il.state == "start" {
			opened = append(opened, il.detector)
		}
	}
	assert.Equal(t, []string{"pipeline_bubble"}, opened, "collective waiting is not observable there, and each tp group is even")
}

// Every detector's fault, present only at every other scrape from 100 s on, with incidents opening on the
// first evaluation that fires (open_after 1): each opens once and stays open through the scrapes without
// the fault (close_after and the separate clear thresholds), never closing to reopen. With close_after 1 as
// well, four of them flap.
func TestDetectorsDoNotFlap(t *testing.T) {
	// Detectors whose evidence an intermittent fault does not make: a replica that reports every other
	// scrape is never silent for `stale`, and the others judge the interval's totals or means, which halve.
	quietWhenIntermittent := map[string]bool{"stale_telemetry": true, "prefix_cache_collapse": true, "gpu_idle_while_waiting": true, "starvation": true}
	for _, tc := range detectorScenarios() {
		t.Run(tc.detector, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.Incidents.OpenAfter = 1 })
			r.run([]string{"r1", "r2"}, 400, func(rep string, sec float64, s *replicaState) {
				if sec < 100 || int(sec/10)%2 == 0 {
					tc.state(rep, sec, s)
				}
			})
			var states []string
			for _, il := range r.incidents() {
				if il.detector == tc.detector && il.state != "update" {
					states = append(states, il.state)
				}
			}
			if quietWhenIntermittent[tc.detector] {
				assert.Empty(t, states)
				return
			}
			assert.Equal(t, []string{"start"}, states, "opens once and stays open")
		})
	}
}

func TestHealthyFleetIsQuiet(t *testing.T) {
	r := newRig(t)
	r.run([]string{"r1", "r2", "r3"}, 300, nil)
	assert.Empty(t, r.incidents())
	h := r.lastGauges(schema.MetricLLMReplicaHealthScore)
	for _, rep := range []string{"r1", "r2", "r3"} {
		assert.Equal(t, 1.0, h[rep], rep)
	}
	assert.Equal(t, map[string]float64{model + "/" + reasonSteady: 3}, r.desired())
}

func TestIncidentsDoNotFlap(t *testing.T) {
	t.Run("hovering between the fire and clear thresholds holds", func(t *testing.T) {
		r := newRig(t)
		// Waiting 8 and growing opens it; then it hovers at 3.5-4.2 (between clear 3.2 and fire 4): it stays open.
		r.run([]string{"r1"}, 400, func(_ string, sec float64, s *replicaState) {
			switch {
			case sec >= 100 && sec < 160:
				s.values[schema.MetricLLMSchedulerRequestsWaiting] = 4 * math.Pow(2, (sec-90)/20)
			case sec >= 160:
				s.values[schema.MetricLLMSchedulerRequestsWaiting] = map[bool]float64{true: 3.5, false: 4.2}[int(sec/10)%2 == 0]
			}
		})
		var states []string
		for _, il := range r.incidents() {
			states = append(states, il.state)
		}
		assert.Equal(t, "start", states[0])
		assert.NotContains(t, states, "end", "no flapping while it hovers")
	})
	t.Run("alternating fire and clear never opens", func(t *testing.T) {
		r := newRig(t)
		// The batch is at its capacity; the queue flips between 6 (saturated) and 1 (clear) every scrape.
		r.run([]string{"r1"}, 400, func(_ string, sec float64, s *replicaState) {
			s.values[schema.MetricLLMSchedulerRequestsMaxRunning] = 16
			if sec >= 100 {
				s.values[schema.MetricLLMSchedulerRequestsWaiting] = map[bool]float64{true: 6, false: 1}[int(sec/10)%2 == 0]
			}
		})
		assert.Empty(t, r.incidents(), "open_after is 2: a condition that holds every other interval is noise")
		assert.Equal(t, map[string]float64{"r1": 1}, r.lastGauges(schema.MetricLLMReplicaBatchUtilization), "16 running of 16")
	})
	t.Run("life cycle: start, updates, end, one id", func(t *testing.T) {
		r := newRig(t)
		r.run([]string{"r1"}, 400, func(_ string, sec float64, s *replicaState) {
			if sec >= 100 && sec < 250 {
				s.gpus[0].Throttle = []string{"sw_thermal"}
			}
		})
		logs := r.incidents()
		require.NotEmpty(t, logs)
		assert.Equal(t, "start", logs[0].state)
		assert.Equal(t, "end", logs[len(logs)-1].state)
		for _, il := range logs[1 : len(logs)-1] {
			assert.Equal(t, "update", il.state)
		}
		assert.Less(t, len(logs), 8, "not re-emitted every interval")
		for _, il := range logs {
			assert.Equal(t, logs[0].id, il.id)
		}
		assert.Empty(t, r.lastGauges(schema.MetricLLMIncidentActive), "no incident open at the end")
		var values []float64
		for _, md := range r.metrics.AllMetrics() {
			forEach(md, schema.MetricLLMIncidentActive, func(dp pmetric.NumberDataPoint) { values = append(values, dp.DoubleValue()) })
		}
		require.NotEmpty(t, values)
		assert.Equal(t, 0.0, values[len(values)-1], "the closing evaluation says 0, so a backend that keeps the last value shows it closed")
	})
}

func TestRouting(t *testing.T) {
	r := newRig(t)
	r.run([]string{"a-calm", "b-busy", "c-stale", "d-half"}, 200, func(rep string, sec float64, s *replicaState) {
		switch rep {
		case "b-busy": // high queue, full KV
			s.values[schema.MetricLLMSchedulerRequestsWaiting] = 12
			s.values[schema.MetricLLMKVCacheUtilization] = 0.97
		case "c-stale": // looks perfect, but its telemetry stopped
			s.values[schema.MetricLLMKVCacheUtilization] = 0.05
			s.silent = sec > 120
		case "d-half":
			s.values[schema.MetricLLMSchedulerRequestsWaiting] = 1
			s.values[schema.MetricLLMKVCacheUtilization] = 0.6
		}
	})
	scores := r.lastGauges(schema.MetricLLMReplicaRoutingScore)
	assert.Greater(t, scores["a-calm"], scores["d-half"], "low queue + free KV beats some queue")
	assert.Greater(t, scores["d-half"], scores["b-busy"], "some queue beats high queue + full KV")
	assert.Equal(t, 0.0, scores["c-stale"], "stale telemetry loses")
	assert.Equal(t, map[string]float64{"a-calm": 1, "b-busy": 0, "c-stale": 0, "d-half": 0}, r.lastGauges(schema.MetricLLMReplicaRoutingRecommended))
	health := r.lastGauges(schema.MetricLLMReplicaHealthComponent)
	assert.Equal(t, 0.0, health["c-stale/telemetry"])
	assert.InDelta(t, 0.15, health["b-busy/kv_cache"], 1e-9)
	assert.InDelta(t, 1/(1+12.0/2), health["b-busy/queue"], 1e-9)
}

func TestAutoscaling(t *testing.T) {
	for _, tc := range []struct {
		name    string
		waiting float64
		kv      float64
		from    float64 // the queue is there from this second on
		want    map[string]float64
	}{
		// Before any replica was seen with work waiting, its capacity is unknown: the queue rule.
		{"a queue appears", 10, 0.4, 90, map[string]float64{model + "/" + reasonQueue: 10}}, // 2 replicas x 10 waiting / 2 per replica
		// A standing queue: both replicas serve what they can (5 requests/s each, all that arrives), so the
		// pool needs 10/s over 5/s at 80%: 3 replicas, not the queue rule's 10.
		{"a standing queue", 10, 0.4, -600, map[string]float64{model + "/" + reasonDemand: 3}},
		{"KV beyond target", 0, 0.95, -600, map[string]float64{model + "/" + reasonKVCache: 3}}, // ceil(2 x 0.95/0.85)
		{"low load", 0, 0.1, -600, map[string]float64{model + "/" + reasonLowLoad: 1}},
		{"steady", 0, 0.5, -600, map[string]float64{model + "/" + reasonSteady: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.run([]string{"r1", "r2"}, 100, func(_ string, sec float64, s *replicaState) {
				if sec >= tc.from {
					s.values[schema.MetricLLMSchedulerRequestsWaiting] = tc.waiting
				}
				s.values[schema.MetricLLMKVCacheUtilization] = tc.kv
			})
			assert.Equal(t, tc.want, r.desired())
			assert.Equal(t, map[string]float64{model: 2}, r.lastGauges(schema.MetricLLMPoolReplicas))
		})
	}
	// Demand above capacity, flat: the queue grows for as long as it lasts (0.2 requests/s per replica), and
	// the queue rule would follow it (to max_replicas). Demand over capacity stays where it is.
	t.Run("flat demand above capacity", func(t *testing.T) {
		for _, until := range []float64{300, 1800} {
			r := newRig(t)
			r.run([]string{"r1", "r2"}, until, func(_ string, sec float64, s *replicaState) {
				s.values[schema.MetricLLMSchedulerRequestsWaiting] = 10 + 0.2*(sec+600)
			})
			// 2 x 5.2 arriving, 5 served per replica: ceil(10.4 / (5 x 0.8)) = 3, the drain of the queue
			// (2 x 490 at 1800 s over 10 minutes) asks for less.
			assert.Equal(t, map[string]float64{model + "/" + reasonDemand: 3}, r.desired(), "after %v s", until)
		}
	})
	t.Run("demand rising", func(t *testing.T) {
		r := newRig(t)
		r.run([]string{"r1"}, 100, func(_ string, sec float64, s *replicaState) {
			// Arrivals 5/s (what is served) plus the queue's growth, which rises by 1.2/s a minute: 19/s now.
			s.values[schema.MetricLLMSchedulerRequestsWaiting] = 10 + (sec+600)*(sec+600)/100
		})
		desired := r.desired()[model+"/"+reasonDemand]
		forecast := r.lastGauges(schema.MetricLLMPoolForecastReplicas)[model]
		assert.Equal(t, 6.0, desired, "4,910 waiting drained within 10 minutes: ceil((19 + 8.2) / 5), more than ceil(19 / (5 x 0.8))")
		assert.InDelta(t, 8, forecast, 1, "ten minutes more of the trend: about 31/s")
	})
	t.Run("saturation forecast while the queue grows", func(t *testing.T) {
		r := newRig(t)
		r.run([]string{"r1"}, 100, func(_ string, sec float64, s *replicaState) {
			if sec >= 0 {
				s.values[schema.MetricLLMSchedulerRequestsWaiting] = 0.5 * math.Pow(1.5, sec/60) // x1.5 a minute, at 0.86 now
			}
		})
		eta := r.lastGauges(schema.MetricLLMPoolSaturationEta)[model]
		// (waiting+1) grows about 1.2x a minute here; from max(waiting, 1) to the target of 2 takes ln 2 / ln 1.2 minutes.
		assert.InDelta(t, 228, eta, 60)
		desired := r.desired()[model+"/"+reasonSteady]
		forecast := r.lastGauges(schema.MetricLLMPoolForecastReplicas)[model]
		assert.Equal(t, 1.0, desired, "fine now")
		assert.Greater(t, forecast, desired, "not in ten minutes at this growth")
	})
}

// tenantTotals are one tenant's cumulative counts, as llm_root_cause reports them.
type tenantTotals struct {
	tokens, cached, requests, queueSeconds   float64
	generated, prefillSeconds, decodeSeconds float64
}

// rootCauseCounters is llm_root_cause's output for one replica at sec seconds.
func rootCauseCounters(replica string, sec float64, tenants map[string]tenantTotals) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	ts := pcommon.Timestamp(fleetstatetest.At(sec))
	sum := func(name string) pmetric.NumberDataPointSlice {
		m := ms.AppendEmpty()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		return s.DataPoints()
	}
	tokens, cached, requests := sum(schema.MetricLLMTenantTokens), sum(schema.MetricLLMTenantPromptTokens), sum(schema.MetricLLMRequestRootCause)
	phases := ms.AppendEmpty()
	phases.SetName(schema.MetricLLMRequestPhaseDuration)
	hist := phases.SetEmptyHistogram().DataPoints()
	attrs := func(a pcommon.Map, tenant, k, v string) {
		a.PutStr(schema.AttrLLMTenant, tenant)
		a.PutStr(schema.AttrGenAIRequestModel, model)
		a.PutStr(schema.AttrServiceInstanceID, replica)
		a.PutStr(k, v)
	}
	for tenant, tt := range tenants {
		for _, p := range []struct {
			dps  pmetric.NumberDataPointSlice
			k, v string
			val  float64
		}{
			{tokens, schema.AttrLLMTokenType, "prompt", tt.tokens},
			{cached, schema.AttrLLMPromptCache, "cached", tt.cached},
			{requests, schema.AttrLLMRootCause, "none", tt.requests},
		} {
			dp := p.dps.AppendEmpty()
			dp.SetTimestamp(ts)
			dp.SetDoubleValue(p.val)
			attrs(dp.Attributes(), tenant, p.k, p.v)
		}
		if tt.generated > 0 {
			dp := tokens.AppendEmpty()
			dp.SetTimestamp(ts)
			dp.SetDoubleValue(tt.generated)
			attrs(dp.Attributes(), tenant, schema.AttrLLMTokenType, "generation")
		}
		for _, p := range []struct {
			phase string
			sum   float64
		}{{"queue", tt.queueSeconds}, {"prefill", tt.prefillSeconds}, {"decode", tt.decodeSeconds}} {
			dp := hist.AppendEmpty()
			dp.SetTimestamp(ts)
			dp.SetSum(p.sum)
			dp.SetCount(uint64(tt.requests))
			attrs(dp.Attributes(), tenant, schema.AttrLLMPhase, p.phase)
		}
	}
	return md
}

// queueTimes is an engine's cumulative queue-time histogram (bucket counts for bounds 0.1, 0.5, 1, 5, 30 s).
func queueTimes(md pmetric.Metrics, counts []uint64) pmetric.Metrics {
	rm := md.ResourceMetrics().At(0)
	m := rm.ScopeMetrics().At(0).Metrics().AppendEmpty()
	m.SetName(schema.MetricLLMRequestQueueTime)
	dp := m.SetEmptyHistogram().DataPoints().AppendEmpty()
	dp.SetTimestamp(rm.ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0).Timestamp())
	dp.ExplicitBounds().FromRaw([]float64{0.1, 0.5, 1, 5, 30})
	dp.BucketCounts().FromRaw(counts)
	return md
}

func TestStarvationFromTheEnginesQueueTimes(t *testing.T) {
	r := newRig(t)
	// Every 10 s, 100 requests queue under 100 ms; from 100 s on, 3 of each 100 wait 5 to 30 s.
	slow := uint64(0)
	for sec := -600.0; sec <= 200; sec += 10 {
		n := uint64((sec + 600) / 10 * 100)
		if sec >= 100 {
			slow += 3
		}
		v := steady(sec)
		delete(v, schema.MetricLLMSchedulerRequestsWaiting) // keep the gauge first: the helper reads its time
		md := fleetstatetest.Engine("r1", model, sec, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 0})
		r.feed(queueTimes(md, []uint64{n - slow, 0, 0, 0, slow, 0}))
		r.feed(fleetstatetest.Engine("r1", model, sec, v))
	}
	var started []incidentLog
	for _, il := range r.incidents() {
		if il.state == "start" {
			started = append(started, il)
		}
	}
	require.Len(t, started, 1)
	assert.Equal(t, "starvation", started[0].detector)
	assert.Equal(t, 30.0, started[0].evidence["queue_time_p99"])
	assert.Equal(t, 0.1, started[0].evidence["queue_time_p50"])
}

func TestTenantFairness(t *testing.T) {
	r := newRig(t)
	r.run([]string{"r1", "r2"}, 200, func(rep string, sec float64, _ *replicaState) {
		if sec < 0 {
			return
		}
		k := (sec + 10) / 10
		tenants := map[string]tenantTotals{
			"acme":     {tokens: 1000 * k, requests: 10 * k, queueSeconds: 1 * k},
			"batch-co": {tokens: 1000 * k, requests: 10 * k, queueSeconds: 1 * k},
		}
		if sec >= 100 { // batch-co sends a few huge requests and the others queue behind them
			extra := (sec - 90) / 10
			tenants["batch-co"] = tenantTotals{tokens: 1000*k + 50000*extra, requests: 10*k + 2*extra, queueSeconds: 1*k + 0.2*extra}
			tenants["acme"] = tenantTotals{tokens: 1000*k + 1000*extra, requests: 10*k + 10*extra, queueSeconds: 1*k + 30*extra}
		}
		r.feed(rootCauseCounters(rep, sec, tenants))
	})
	var started []incidentLog
	for _, il := range r.incidents() {
		if il.state == "start" {
			started = append(started, il)
		}
	}
	require.Len(t, started, 1, "%+v", started)
	got := started[0]
	assert.Equal(t, "tenant_fairness", got.detector)
	assert.Empty(t, got.replica, "a pool-wide incident")
	assert.Equal(t, "batch-co", got.evidence["noisy_tenant"])
	assert.Equal(t, "acme", got.evidence["starving_tenant"])
	assert.InDelta(t, 31.0/20, got.evidence["starving_queue_seconds"], 0.01, "per interval: 31 s of queue over 20 requests")
	assert.Contains(t, got.actions, "route tenant batch-co to a separate pool")
}

func TestCostAddsUpToTheGPUBill(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Cost.GPUPricePerHour = map[string]float64{"NVIDIA H100 80GB HBM3": 3.6}
		c.Cost.DefaultGPUPricePerHour = 1.8
	})
	r.run([]string{"r1", "r2"}, 300, func(rep string, sec float64, s *replicaState) {
		if rep == "r1" {
			s.gpus[0].Name = "NVIDIA H100 80GB HBM3"
			s.gpus = append(s.gpus, fleetstatetest.GPUState{ID: "GPU-r1-b", Owner: "r1", Name: "NVIDIA H100 80GB HBM3", Utilization: 0.5})
		}
		if rep == "r1" && sec >= 0 {
			// acme sends three times globex's tokens to r1; r2 has no request spans at all
			r.feed(rootCauseCounters("r1", sec, map[string]tenantTotals{
				"acme":   {tokens: 300 * (sec + 10), cached: 100 * (sec + 10), requests: sec + 10},
				"globex": {tokens: 100 * (sec + 10), requests: (sec + 10) / 2},
			}))
		}
	})
	amount, gpuTime := map[string]float64{}, map[string]float64{}
	all := r.metrics.AllMetrics()
	last := all[len(all)-1]
	forEach(last, schema.MetricLLMCostAmount, func(dp pmetric.NumberDataPoint) {
		amount[attrvalue.String(dp.Attributes(), schema.AttrServiceInstanceID)+"/"+attrvalue.String(dp.Attributes(), schema.AttrLLMTenant)] += dp.DoubleValue()
	})
	forEach(last, schema.MetricLLMCostGPUTime, func(dp pmetric.NumberDataPoint) {
		gpuTime[attrvalue.String(dp.Attributes(), schema.AttrServiceInstanceID)] += dp.DoubleValue()
	})
	elapsed := 890.0 // evaluations at -590 ... 300 s: the first one opens the clock
	assert.InDelta(t, 2*elapsed, gpuTime["r1"], 1e-6, "two GPUs for the whole time: nothing lost, nothing counted twice")
	assert.InDelta(t, 1*elapsed, gpuTime["r2"], 1e-6)
	r1Total := amount["r1/acme"] + amount["r1/globex"] + amount["r1/"+unattributed]
	assert.InDelta(t, 2*3.6*elapsed/3600, r1Total, 1e-9, "r1's bill: two H100s")
	assert.InDelta(t, 1.8*elapsed/3600, amount["r2/"+unattributed], 1e-9, "r2: default price, no tokens, unattributed")
	assert.InDelta(t, 3, amount["r1/acme"]/amount["r1/globex"], 1e-9, "split by tokens")

	categories := map[string]float64{}
	forEach(last, schema.MetricLLMCostGPUTimeByCategory, func(dp pmetric.NumberDataPoint) {
		categories[attrvalue.String(dp.Attributes(), schema.AttrServiceInstanceID)+"/"+attrvalue.String(dp.Attributes(), schema.AttrLLMCostCategory)] += dp.DoubleValue()
	})
	assert.InDelta(t, 2*elapsed, categories["r1/busy"]+categories["r1/idle"], 1e-6, "categories add up to the GPU time")
	assert.InDelta(t, (0.8+0.5)*elapsed, categories["r1/busy"], 1e-6)
	savings := 0.0
	forEach(last, schema.MetricLLMCostPrefixCacheSavings, func(dp pmetric.NumberDataPoint) { savings += dp.DoubleValue() })
	assert.Positive(t, savings)

	// Per request: one interval of r1 (10 s of two H100s) split 3:1 by tokens, over 10 and 5 requests.
	perRequest := r.lastGauges(schema.MetricLLMCostPerRequest)
	interval := 2 * 3.6 * 10 / 3600
	assert.InDelta(t, interval*0.75/10, perRequest[model+"/acme"], 1e-12)
	assert.InDelta(t, interval*0.25/5, perRequest[model+"/globex"], 1e-12)
}

// The GPU-time breakdown carves collective waiting out of busy time and cache-miss overhead out of prefill,
// and still adds up to the GPU time.
func TestGPUTimeBreakdown(t *testing.T) {
	r := newRig(t)
	r.run([]string{"r1"}, 200, func(_ string, sec float64, s *replicaState) {
		s.gpus[0].Utilization = 0.5
		s.collectives = straggling(sec, true) // 1% of the ranks' time waiting, 40% from 100 s
		if sec >= 100 {
			s.values[schema.MetricLLMPrefixCacheHits] = 700 * 70 // the cache stops hitting
		}
		if sec >= 0 {
			k := (sec + 10) / 10
			r.feed(rootCauseCounters("r1", sec, map[string]tenantTotals{"acme": {
				tokens: 1000 * k, generated: 500 * k,
				requests: 10 * k, prefillSeconds: 2 * k, decodeSeconds: 6 * k,
			}}))
		}
	})
	categories := map[string]float64{}
	all := r.metrics.AllMetrics()
	forEach(all[len(all)-1], schema.MetricLLMCostGPUTimeByCategory, func(dp pmetric.NumberDataPoint) {
		categories[attrvalue.String(dp.Attributes(), schema.AttrLLMCostCategory)] += dp.DoubleValue()
	})
	total := 0.0
	for _, v := range categories {
		total += v
	}
	elapsed := 790.0 // evaluations at -590 ... 200 s
	assert.InDelta(t, elapsed, total, 1e-6, "nothing lost, nothing counted twice: %v", categories)
	assert.InDelta(t, 0.5*elapsed, categories["idle"], 1e-6)
	// Busy is 5 GPU-seconds per 10 s: 1% of it waiting in the 70 evaluations up to 100 s (each sees the batch
	// that covers its interval), 40% in the 9 after it (200 s is evaluated only once data passes 205 s).
	assert.InDelta(t, 0.5*10*(0.01*70+0.4*9), categories["collective_wait"], 1e-6)
	assert.Positive(t, categories["cache_miss"], "the hit ratio fell below its usual level")
	assert.Positive(t, categories["prefill"])
	assert.Positive(t, categories["decode"])
}

func TestCostPerToken(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Cost.DefaultGPUPricePerHour = 3.6 })
	r.run([]string{"r1"}, 100, func(_ string, sec float64, s *replicaState) {
		s.gpus[0].Utilization = 0.5
		if sec >= 0 {
			k := (sec + 10) / 10 // every 10 s: 1000 prompt tokens (200 cached), 500 generated, 2 s prefill, 6 s decode
			r.feed(rootCauseCounters("r1", sec, map[string]tenantTotals{"acme": {
				tokens: 1000 * k, cached: 200 * k, generated: 500 * k,
				requests: 10 * k, prefillSeconds: 2 * k, decodeSeconds: 6 * k,
			}}))
		}
	})
	// 10 s of one GPU at 3.6 an hour is 0.01; half of it busy, a quarter of that prefill.
	perToken := r.lastGauges(schema.MetricLLMCostPerToken)
	assert.InDelta(t, 0.005*2/8/800, perToken[model+"/prompt"], 1e-15, "over the 800 computed prompt tokens")
	assert.InDelta(t, 0.005*6/8/500, perToken[model+"/generation"], 1e-15)
	savings := 0.0
	all := r.metrics.AllMetrics()
	forEach(all[len(all)-1], schema.MetricLLMCostPrefixCacheSavings, func(dp pmetric.NumberDataPoint) { savings += dp.DoubleValue() })
	intervals := 11.0 // 0 ... 100 s, one evaluation per 10 s once the counters run
	assert.InDelta(t, intervals*200*perToken[model+"/prompt"], savings, 1e-12, "each cached token at the cost of computing one")
}

func TestConfig(t *testing.T) {
	configtest.Sections(t, "testdata/config.yaml", createDefaultConfig,
		map[string]string{"llm_signals": "", "llm_signals/custom": "", "llm_signals/bad": "stale: must be at least the interval"})
}

// A serving system's frontend tier (Dynamo's) reports the pool behind it with the same canonical metrics a
// replica has (its model's max_num_seqs, KV blocks, queue): beside two workers it is no third replica.
func TestFrontendTierIsNoReplica(t *testing.T) {
	r := newRig(t)
	r.run([]string{"worker-0", "worker-1", "frontend"}, 60, func(rep string, _ float64, s *replicaState) {
		if rep == "frontend" {
			s.gpus = nil
			s.values[schema.MetricLLMSchedulerRequestsMaxRunning] = 256
			s.resource = map[string]string{schema.AttrLLMServeTier: schema.ServeTierFrontend}
		}
	})
	assert.Equal(t, map[string]float64{model: 2}, r.lastGauges(schema.MetricLLMPoolReplicas))
}
