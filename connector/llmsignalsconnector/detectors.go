package llmsignalsconnector

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/servescope/servescope/internal/fleetstate"
	"github.com/servescope/servescope/internal/schema"
)

// view is one replica at one evaluation: its state now, and over the last interval.
type view struct {
	replica, model string
	now            fleetstate.Summary // at the evaluation time: the newest snapshot's values
	interval       fleetstate.Summary // over the interval just ended: maxima, deltas, rates
	trend          fleetstate.Summary // over detectors.trend_window: slow trends (GPU memory)
	ageSeconds     float64            // since the newest snapshot
	stale          bool
	desired        int // the pool's desired replicas, for actions
	poolReplicas   int
	usage          *replicaUsage // what llm_root_cause and the engine's histograms counted in the interval
}

// finding is what a detector sees in one view. fire and clear are separate conditions (thresholds apart),
// so a value hovering between them neither opens nor closes an incident.
type finding struct {
	fire, clear bool
	sentence    string
	evidence    map[string]float64
	text        map[string]string
	actions     []string
}

// detector is one rule of the table below. Its name is a value of llm.incident.detector; the schema gives
// each one its severity, which the generated alert rules carry too.
type detector struct {
	name      string
	check     func(v *view, d *DetectorsConfig) finding
	checkPool func(p *pool, d *DetectorsConfig) finding
}

func (d detector) severity() string { return schema.IncidentDetectorSeverity(d.name) }

func known(values ...float64) bool {
	for _, v := range values {
		if math.IsNaN(v) {
			return false
		}
	}
	return true
}

// detectors, in the order their incidents are reported. README.md documents each rule.
var detectors = []detector{
	{name: schema.IncidentDetectorStaleTelemetry, check: func(v *view, _ *DetectorsConfig) finding {
		return finding{
			fire: v.stale, clear: !v.stale,
			sentence: fmt.Sprintf("no engine metrics from %s for %.0f s", v.replica, v.ageSeconds),
			evidence: map[string]float64{"age_seconds": v.ageSeconds},
			actions:  []string{"check the engine's metrics endpoint and the receiver scraping it", "route around the replica until its telemetry returns"},
		}
	}},
	{name: schema.IncidentDetectorSchedulerSaturation, check: func(v *view, d *DetectorsConfig) finding {
		waiting, growth := v.now.WaitingAtArrival, v.now.QueueGrowthPerMinute
		if v.stale || !known(waiting) {
			return finding{clear: !v.stale}
		}
		atCapacity := known(v.now.MaxRunning, v.interval.RunningMax) && v.interval.RunningMax >= v.now.MaxRunning
		f := finding{
			fire:     waiting >= d.SaturationWaiting && ((known(growth) && growth >= d.SaturationGrowth) || atCapacity),
			clear:    waiting < d.SaturationWaiting*d.ClearFraction,
			evidence: map[string]float64{"waiting": waiting, "queue_growth_per_minute": growth, "running_max": v.interval.RunningMax, "finished_per_second": v.interval.FinishedRate},
		}
		f.sentence = fmt.Sprintf("%s requests waiting on %s (%s %.0f s before) while %.1f requests/s finish", num(waiting), v.replica,
			num(v.now.WaitingEarlier), v.now.WaitingEarlierAge, v.interval.FinishedRate)
		if atCapacity && (!known(v.interval.KVUtilizationMax) || v.interval.KVUtilizationMax < 0.8) && (!known(v.interval.GPUUtilizationMean) || v.interval.GPUUtilizationMean < 0.85) {
			f.actions = append(f.actions, fmt.Sprintf("raise max-num-seqs from %s to %s: the batch is full while KV cache and GPU have room",
				num(v.now.MaxRunning), num(math.Ceil(v.now.MaxRunning*1.5))))
		}
		if v.desired > v.poolReplicas {
			f.actions = append(f.actions, fmt.Sprintf("add replicas: the %s pool needs %d, it runs %d", v.model, v.desired, v.poolReplicas))
		} else {
			f.actions = append(f.actions, "add a replica")
		}
		return f
	}},
	{name: schema.IncidentDetectorStarvation, check: func(v *view, d *DetectorsConfig) finding {
		if v.stale {
			return finding{}
		}
		// The engine's queue-time histogram: some requests wait far longer than the typical one.
		if v.usage != nil {
			if p99, n := v.usage.queueQuantile(0.99); n > 0 {
				p50, _ := v.usage.queueQuantile(0.5)
				floor := math.Max(p50, 0.01)
				return finding{
					fire:     n >= d.StarvationMinRequests && p99 >= d.StarvationQueueFactor*floor && p99 >= d.StarvationMinSeconds,
					clear:    p99 < d.StarvationQueueFactor*d.ClearFraction*floor || p99 < d.StarvationMinSeconds*d.ClearFraction,
					sentence: fmt.Sprintf("on %s the slowest 1%% of requests queued up to %.2f s while the median queued %.2f s (%s requests in the interval)", v.replica, p99, p50, num(n)),
					evidence: map[string]float64{"queue_time_p99": p99, "queue_time_p50": p50, "requests": n},
					actions:  []string{"find who floods the queue: llm.request.root_cause by tenant on this replica", "cap the noisy tenant or route it to a separate pool", "enable priority scheduling for short requests where the engine offers it"},
				}
			}
		}
		// Without the histogram: time to first token against its usual level, while requests wait.
		mean, usual := v.interval.TTFTMean, v.interval.TTFTUsual
		if !known(mean, usual) || usual <= 0 {
			return finding{clear: true}
		}
		return finding{
			fire:     mean >= d.StarvationTTFTFactor*usual && v.interval.WaitingMax >= 1,
			clear:    mean < d.StarvationTTFTFactor*d.ClearFraction*usual,
			sentence: fmt.Sprintf("time to first token on %s averaged %.2f s over the interval against a usual %.2f s", v.replica, mean, usual),
			evidence: map[string]float64{"ttft_mean": mean, "ttft_usual": usual, "waiting_max": v.interval.WaitingMax},
			actions:  []string{"find who floods the queue: llm.request.root_cause by tenant on this replica", "cap the noisy tenant or route it to a separate pool"},
		}
	}},
	{name: schema.IncidentDetectorKVThrash, check: func(v *view, d *DetectorsConfig) finding {
		kv, pre := v.interval.KVUtilizationMax, v.interval.Preemptions
		if v.stale || !known(kv, pre) {
			return finding{clear: !v.stale}
		}
		f := finding{
			fire:     kv >= d.KVThrashUtilization && pre > 0,
			clear:    pre == 0 && kv < d.KVThrashUtilization,
			sentence: fmt.Sprintf("KV cache on %s at %.0f%% with %s preemptions in the interval", v.replica, 100*kv, num(pre)),
			evidence: map[string]float64{"kv_utilization_max": kv, "preemptions": pre, "gpu_memory_utilization_max": v.interval.GPUMemoryUtilizationMax},
		}
		if !known(v.interval.GPUMemoryUtilizationMax) || v.interval.GPUMemoryUtilizationMax < 1-d.SuggestedKVMemoryStep {
			f.actions = append(f.actions, fmt.Sprintf("increase the KV cache: raise gpu-memory-utilization by %.2f (e.g. 0.90 → %.2f)", d.SuggestedKVMemoryStep, 0.90+d.SuggestedKVMemoryStep))
		}
		f.actions = append(f.actions, "reduce max active sequences (max-num-seqs) temporarily", "add a replica")
		return f
	}},
	{name: schema.IncidentDetectorPrefixCacheCollapse, check: func(v *view, d *DetectorsConfig) finding {
		recent, usual := v.interval.PrefixHitRatio, v.interval.PrefixHitRatioUsual
		if v.stale || !known(recent, usual) || usual < d.HitRatioUsualMin {
			return finding{clear: !v.stale}
		}
		return finding{
			fire:     recent < d.HitRatioCollapse*usual,
			clear:    recent >= d.HitRatioCollapse*usual/d.ClearFraction,
			sentence: fmt.Sprintf("prefix-cache hit ratio on %s fell to %.0f%% from a usual %.0f%%", v.replica, 100*recent, 100*usual),
			evidence: map[string]float64{"hit_ratio": recent, "hit_ratio_usual": usual},
			actions:  []string{"look for a prompt-template or system-prompt change (llm.tenant.prompt_tokens by tenant)", "route prompt families to the replicas that cache them (prefix-aware routing)"},
		}
	}},
	{name: schema.IncidentDetectorGPUIdleWhileWaiting, check: func(v *view, d *DetectorsConfig) finding {
		util, waiting := v.interval.GPUUtilizationMean, v.now.WaitingAtArrival
		if v.stale || !known(util, waiting) {
			return finding{clear: !v.stale}
		}
		return finding{
			fire:     util < d.GPUIdleUtilization && waiting >= 1,
			clear:    util >= d.GPUIdleUtilization/d.ClearFraction || waiting == 0,
			sentence: fmt.Sprintf("GPUs of %s at %.0f%% utilization while %s requests wait", v.replica, 100*util, num(waiting)),
			evidence: map[string]float64{"gpu_utilization_mean": util, "waiting": waiting},
			actions:  []string{"check the scheduler's limits (max-num-seqs, free KV blocks) and the engine's logs: work is queued but not running"},
		}
	}},
	{name: schema.IncidentDetectorGPUThrottling, check: func(v *view, d *DetectorsConfig) finding {
		if !v.interval.HasGPU {
			return finding{clear: true}
		}
		reasons := strings.Join(v.interval.ThrottleReasons, ",")
		// dcgm-exporter gives throttle reasons only as a bitmask: there a busy GPU's SM clock falling far
		// below its peak is what shows the throttling.
		ratio := v.interval.SMClockRatio
		dropped := known(ratio) && ratio < d.ClockDrop
		recovered := !known(ratio) || ratio >= 1-(1-d.ClockDrop)*d.ClearFraction
		what := "throttled (" + reasons + ")"
		if len(v.interval.ThrottleReasons) == 0 {
			what = fmt.Sprintf("down to %.0f%% of their peak while busy", 100*ratio)
		}
		return finding{
			fire:     len(v.interval.ThrottleReasons) > 0 || dropped,
			clear:    len(v.interval.ThrottleReasons) == 0 && recovered,
			sentence: fmt.Sprintf("GPU clocks of %s %s", v.replica, what),
			evidence: map[string]float64{"sm_clock_ratio": ratio},
			text:     map[string]string{"throttle_reasons": reasons},
			actions:  []string{"check cooling and power caps on the node", "drain the replica if it persists"},
		}
	}},
	{name: schema.IncidentDetectorGPUMemoryPressure, check: func(v *view, d *DetectorsConfig) finding {
		mem := v.interval.GPUMemoryUtilizationMax
		if !known(mem) {
			return finding{clear: true}
		}
		return finding{
			fire:     mem >= d.GPUMemoryPressure,
			clear:    mem < d.GPUMemoryPressure-0.03,
			sentence: fmt.Sprintf("GPU memory of %s at %.1f%%", v.replica, 100*mem),
			evidence: map[string]float64{"gpu_memory_utilization_max": mem},
			actions:  []string{"lower gpu-memory-utilization or max-model-len before an out-of-memory error", "move other processes off the GPU"},
		}
	}},
	{name: schema.IncidentDetectorGPUMemoryOOMRisk, check: func(v *view, d *DetectorsConfig) finding {
		now, growth := v.trend.GPUMemoryUtilizationNow, v.trend.GPUMemoryGrowth
		if !known(now, growth) {
			return finding{clear: true}
		}
		eta := math.Inf(1)
		if growth > 0 {
			eta = (1 - now) / growth
		}
		horizon := d.OOMHorizon.Seconds()
		return finding{
			fire:     now >= d.OOMFrom && eta <= horizon,
			clear:    now < d.OOMFrom*d.ClearFraction || eta > horizon/d.ClearFraction,
			sentence: fmt.Sprintf("GPU memory of %s at %.1f%% and growing %.2f points a minute: full in about %.0f s", v.replica, 100*now, 6000*growth, eta),
			evidence: map[string]float64{"gpu_memory_utilization": now, "growth_per_minute": 60 * growth, "seconds_to_full": eta},
			actions:  []string{"find what grows (llm.kv_cache.utilization, nvidia.gpu.process.memory.usage per process) before it runs out", "lower max-model-len or max-num-seqs, or restart the replica in a quiet window"},
		}
	}},
	{name: schema.IncidentDetectorGPUErrors, check: func(v *view, _ *DetectorsConfig) finding {
		x := v.interval.XIDErrors
		if !known(x) {
			return finding{clear: true}
		}
		return finding{
			fire: x > 0, clear: x == 0,
			sentence: fmt.Sprintf("%s XID errors on the GPUs of %s in the interval", num(x), v.replica),
			evidence: map[string]float64{"xid_errors": x},
			actions:  []string{"drain the replica and reset or replace the GPU (check the node's kernel log for the XID code)"},
		}
	}},
	{name: schema.IncidentDetectorTpImbalance, check: func(v *view, d *DetectorsConfig) finding {
		// Like with like: the GPUs of one tensor-parallel group (one pipeline stage) run the same work.
		// Stages differ by design; that is pipeline_bubble's business.
		groups := map[string][]string{}
		for id := range v.interval.GPUUtilization {
			g := v.interval.GPUPositions[id].Group
			groups[g] = append(groups[g], id)
		}
		var worst []string
		var group string
		worstSkew := -1.0
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			ids := groups[g]
			if len(ids) < 2 {
				continue
			}
			sort.Slice(ids, func(i, j int) bool {
				a, b := v.interval.GPUUtilization[ids[i]], v.interval.GPUUtilization[ids[j]]
				return a < b || (a == b && ids[i] < ids[j])
			})
			if skew := v.interval.GPUUtilization[ids[len(ids)-1]] - v.interval.GPUUtilization[ids[0]]; skew > worstSkew {
				worst, group, worstSkew = ids, g, skew
			}
		}
		if worst == nil {
			return finding{clear: true}
		}
		low, high := v.interval.GPUUtilization[worst[0]], v.interval.GPUUtilization[worst[len(worst)-1]]
		where := v.replica
		if group != "" {
			where = "tensor-parallel group " + group
		}
		f := finding{
			fire:     worstSkew >= d.TPImbalanceSkew,
			clear:    worstSkew < d.TPImbalanceSkew*d.ClearFraction,
			sentence: fmt.Sprintf("utilization across the %d GPUs of %s spans %.0f%% to %.0f%%; least busy %s", len(worst), where, 100*low, 100*high, worst[0]),
			evidence: map[string]float64{"utilization_skew": worstSkew, "utilization_min": low, "utilization_max": high},
			text:     map[string]string{"least_busy_gpu": worst[0]},
			actions:  []string{fmt.Sprintf("check GPU %s: a straggler rank, or ranks waiting on it in collectives (NCCL timings show which)", worst[0])},
		}
		if group != "" {
			f.text["group"] = group
		}
		return f
	}},
	{name: schema.IncidentDetectorPipelineBubble, check: func(v *view, d *DetectorsConfig) finding {
		// Busy skew across pipeline stages: a stage that idles waits for its neighbours (uneven layer split,
		// too few micro-batches in flight to fill the pipeline).
		sums, counts := map[int]float64{}, map[int]int{}
		for id, u := range v.interval.GPUUtilization {
			if p, ok := v.interval.GPUPositions[id]; ok && p.PPStage >= 0 {
				sums[p.PPStage] += u
				counts[p.PPStage]++
			}
		}
		if len(sums) < 2 {
			return finding{clear: true}
		}
		idle, busy := -1, -1
		for stage := range sums {
			u := sums[stage] / float64(counts[stage])
			if idle < 0 || u < sums[idle]/float64(counts[idle]) || (u == sums[idle]/float64(counts[idle]) && stage < idle) {
				idle = stage
			}
			if busy < 0 || u > sums[busy]/float64(counts[busy]) || (u == sums[busy]/float64(counts[busy]) && stage < busy) {
				busy = stage
			}
		}
		low, high := sums[idle]/float64(counts[idle]), sums[busy]/float64(counts[busy])
		skew := high - low
		return finding{
			fire:  skew >= d.PipelineBubbleSkew,
			clear: skew < d.PipelineBubbleSkew*d.ClearFraction,
			sentence: fmt.Sprintf("pipeline stages of %s are unevenly busy: stage %d at %.0f%%, stage %d at %.0f%% (%d stages)",
				v.replica, idle, 100*low, busy, 100*high, len(sums)),
			evidence: map[string]float64{
				"stage_utilization_skew": skew, "stage_utilization_min": low, "stage_utilization_max": high,
				"idle_stage": float64(idle), "busy_stage": float64(busy), "stages": float64(len(sums)),
			},
			actions: []string{
				fmt.Sprintf("rebalance layers between pipeline stages: stage %d waits on stage %d", idle, busy),
				"keep more requests in flight (max-num-seqs) so micro-batches fill the pipeline",
				"where the model fits, prefer more tensor parallelism over pipeline stages on one node",
			},
		}
	}},
	{name: schema.IncidentDetectorCollectiveBottleneck, check: func(v *view, d *DetectorsConfig) finding {
		share := v.interval.CollectiveWaitShare
		// Only with the nccl receiver's timings, and never where it says collective time cannot be seen.
		if !known(share) || v.interval.CollectiveObservable == 0 {
			return finding{clear: true}
		}
		late := v.interval.CollectiveLateRank
		f := finding{
			fire:  share >= d.CollectiveWaitShare,
			clear: share < d.CollectiveWaitShare*d.ClearFraction,
			sentence: fmt.Sprintf("collectives of %s spent %.0f%% of the time waiting for their last rank (%.2f ms of arrival skew per collective)",
				v.replica, 100*share, 1000*v.interval.CollectiveSkewMean),
			evidence: map[string]float64{
				"wait_share": share, "skew_mean_seconds": v.interval.CollectiveSkewMean,
				"collective_mean_seconds": v.interval.CollectiveMeanDuration, "late_rank_share": v.interval.CollectiveLateShare,
			},
		}
		if late != "" {
			f.sentence += fmt.Sprintf(", mostly for %s", late)
			f.text = map[string]string{"late_rank": late}
			f.actions = append(f.actions, fmt.Sprintf("check the GPU and host of %s (clocks, throttling, NVLink/PCIe errors, CPU contention, NUMA placement): the other ranks wait for it", late))
		}
		f.actions = append(f.actions, "compare llm.collective.bus_bandwidth across the replica's communicators for a slow link",
			"drain the replica and move it to other GPUs if it persists")
		return f
	}},
}

// tenantFairness is pool-wide: one tenant takes most of the tokens served, far beyond its share of requests,
// while another tenant's requests queue much longer than the first tenant's.
var tenantFairness = detector{name: schema.IncidentDetectorTenantFairness, checkPool: func(p *pool, d *DetectorsConfig) finding {
	tokens, requests, queued := map[string]float64{}, map[string]float64{}, map[string]float64{}
	totalTokens, totalRequests := 0.0, 0.0
	for _, v := range p.views {
		if v.usage == nil {
			continue
		}
		for tm, t := range v.usage.tokens {
			tokens[tm.tenant] += t
			totalTokens += t
		}
		for tm, n := range v.usage.requests {
			requests[tm.tenant] += n
			totalRequests += n
		}
		for tm, q := range v.usage.queued {
			queued[tm.tenant] += q
		}
	}
	if totalTokens <= 0 || totalRequests <= 0 {
		return finding{clear: true}
	}
	noisy := ""
	for _, t := range slices.Sorted(maps.Keys(tokens)) {
		if noisy == "" || tokens[t] > tokens[noisy] {
			noisy = t
		}
	}
	meanQueue := func(t string) float64 {
		if requests[t] <= 0 {
			return math.NaN()
		}
		return queued[t] / requests[t]
	}
	tokenShare, requestShare := tokens[noisy]/totalTokens, requests[noisy]/totalRequests
	starving, worst := "", 0.0
	for _, t := range slices.Sorted(maps.Keys(requests)) {
		if q := meanQueue(t); t != noisy && known(q) && q > worst {
			starving, worst = t, q
		}
	}
	noisyQueue := meanQueue(noisy)
	if !known(noisyQueue) {
		noisyQueue = 0
	}
	dominant := tokenShare >= d.FairnessTokenShare && tokenShare >= 2*requestShare
	starved := starving != "" && worst >= d.FairnessMinQueueSeconds && worst >= 2*noisyQueue
	return finding{
		fire:  dominant && starved,
		clear: tokenShare < d.FairnessTokenShare*d.ClearFraction || worst < d.FairnessMinQueueSeconds*d.ClearFraction,
		sentence: fmt.Sprintf("in the %s pool tenant %s took %.0f%% of the tokens with %.0f%% of the requests, while tenant %s queued %.2f s per request (%s: %.2f s)",
			p.model, noisy, 100*tokenShare, 100*requestShare, starving, worst, noisy, noisyQueue),
		evidence: map[string]float64{"token_share": tokenShare, "request_share": requestShare, "starving_queue_seconds": worst, "noisy_queue_seconds": noisyQueue},
		text:     map[string]string{"noisy_tenant": noisy, "starving_tenant": starving},
		actions:  []string{fmt.Sprintf("route tenant %s to a separate pool", noisy), fmt.Sprintf("rate-limit tenant %s's tokens per minute at the gateway", noisy)},
	}
}}

func num(v float64) string {
	if math.IsNaN(v) {
		return "?"
	}
	return fmt.Sprintf("%.0f", v)
}
