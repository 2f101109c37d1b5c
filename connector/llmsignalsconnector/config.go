package llmsignalsconnector

import (
	"errors"
	"fmt"
	"time"

	"github.com/servescope/servescope/internal/schema"
)

// Config configures the llm_signals connector.
type Config struct {
	// ForecastHorizon is how far ahead llm.pool.forecast_replicas looks.
	ForecastHorizon time.Duration `mapstructure:"forecast_horizon"`
	// Interval is how often detectors and signals are evaluated (on the data's clock: when metrics arrive
	// past the next boundary; on the wall clock when none arrive).
	Interval time.Duration `mapstructure:"interval"`
	// Stale is the age of a replica's newest snapshot beyond which its telemetry counts as stale.
	Stale time.Duration `mapstructure:"stale"`
	// ReplicaKeys name the resource attributes that identify a replica.
	ReplicaKeys []string `mapstructure:"replica_keys"`
	// StateWindow is how much state is kept; MaxReplicas how many replicas (and GPUs).
	StateWindow time.Duration `mapstructure:"state_window"`
	MaxReplicas int           `mapstructure:"max_replicas"`
	// MaxTenants and MaxModels cap the tenants and models cost is attributed to: the busiest of the last hours
	// hold the places, the rest fold into `_other`.
	MaxTenants int `mapstructure:"max_tenants"`
	MaxModels  int `mapstructure:"max_models"`
	// MaxLabelLength cuts every tenant, model and replica name read from the metrics to this many bytes.
	MaxLabelLength int `mapstructure:"max_label_length"`

	Incidents   IncidentsConfig   `mapstructure:"incidents"`
	Detectors   DetectorsConfig   `mapstructure:"detectors"`
	Autoscaling AutoscalingConfig `mapstructure:"autoscaling"`
	Cost        CostConfig        `mapstructure:"cost"`
}

// IncidentsConfig shapes the incident life cycle.
type IncidentsConfig struct {
	// OpenAfter and CloseAfter are the consecutive evaluations a condition must hold to open, and its clear
	// condition to close, an incident: with the detectors' separate fire and clear thresholds, this is the
	// hysteresis that keeps a value hovering at a threshold from flapping.
	OpenAfter  int `mapstructure:"open_after"`
	CloseAfter int `mapstructure:"close_after"`
	// UpdateEvery re-emits an open incident every this many evaluations (0: only start and end).
	UpdateEvery int `mapstructure:"update_every"`
}

// DetectorsConfig holds each detector's thresholds; README.md explains them.
type DetectorsConfig struct {
	SaturationWaiting   float64 `mapstructure:"saturation_waiting"`
	SaturationGrowth    float64 `mapstructure:"saturation_growth"`
	KVThrashUtilization float64 `mapstructure:"kv_thrash_utilization"`
	HitRatioCollapse    float64 `mapstructure:"hit_ratio_collapse"`
	HitRatioUsualMin    float64 `mapstructure:"hit_ratio_usual_min"`
	GPUIdleUtilization  float64 `mapstructure:"gpu_idle_utilization"`
	GPUMemoryPressure   float64 `mapstructure:"gpu_memory_pressure"`
	TPImbalanceSkew     float64 `mapstructure:"tp_imbalance_skew"`
	PipelineBubbleSkew  float64 `mapstructure:"pipeline_bubble_skew"`
	// ClockDrop: a busy GPU whose SM clock fell below this share of its peak is throttled.
	ClockDrop               float64 `mapstructure:"clock_drop"`
	CollectiveWaitShare     float64 `mapstructure:"collective_wait_share"`
	StarvationTTFTFactor    float64 `mapstructure:"starvation_ttft_factor"`
	StarvationQueueFactor   float64 `mapstructure:"starvation_queue_factor"`
	StarvationMinSeconds    float64 `mapstructure:"starvation_min_seconds"`
	StarvationMinRequests   float64 `mapstructure:"starvation_min_requests"`
	FairnessTokenShare      float64 `mapstructure:"fairness_token_share"`
	FairnessMinQueueSeconds float64 `mapstructure:"fairness_min_queue_seconds"`
	// TrendWindow is how far back slow trends (GPU memory growth) are measured; OOMFrom and OOMHorizon: the
	// out-of-memory risk fires from this utilization when the trend fills the GPU within the horizon.
	TrendWindow           time.Duration `mapstructure:"trend_window"`
	OOMFrom               float64       `mapstructure:"oom_from"`
	OOMHorizon            time.Duration `mapstructure:"oom_horizon"`
	ClearFraction         float64       `mapstructure:"clear_fraction"`
	SuggestedKVMemoryStep float64       `mapstructure:"suggested_kv_memory_step"`
}

// AutoscalingConfig sets the targets the desired replica count aims for.
type AutoscalingConfig struct {
	// TargetUtilization is the share of a replica's measured capacity the desired count plans to use: the
	// rest is headroom for bursts and for draining a queue.
	TargetUtilization float64 `mapstructure:"target_utilization"`
	// DrainTime is how soon a queue that has built up should be served: when the headroom would take
	// longer, the desired count adds what it takes.
	DrainTime time.Duration `mapstructure:"drain_time"`
	// DemandHalfLife smooths the pool's arrival rate (the offered load); CapacityHalfLife the per-replica
	// capacity measured while requests were waiting (the same quantity replay calibrates).
	DemandHalfLife   time.Duration `mapstructure:"demand_half_life"`
	CapacityHalfLife time.Duration `mapstructure:"capacity_half_life"`
	// TargetWaitingPerReplica is the queue-length rule, used only until a replica's capacity has been
	// measured (no queue has been seen yet).
	TargetWaitingPerReplica float64 `mapstructure:"target_waiting_per_replica"`
	TargetKVUtilization     float64 `mapstructure:"target_kv_utilization"`
	ScaleDownBelow          float64 `mapstructure:"scale_down_below"`
	MinReplicas             int     `mapstructure:"min_replicas"`
	MaxReplicas             int     `mapstructure:"max_replicas"`
}

// CostConfig prices GPU time.
type CostConfig struct {
	// GPUPricePerHour maps a GPU product name (hw.name, e.g. "NVIDIA H100 80GB HBM3") to its price per hour.
	GPUPricePerHour map[string]float64 `mapstructure:"gpu_price_per_hour"`
	// DefaultGPUPricePerHour prices GPUs not listed, and replicas whose GPUs are not seen.
	DefaultGPUPricePerHour float64 `mapstructure:"default_gpu_price_per_hour"`
	// GPUsPerReplica is assumed where a replica's GPUs are not attributed to it.
	GPUsPerReplica int `mapstructure:"gpus_per_replica"`
}

func createDefaultConfig() *Config {
	return &Config{
		Interval:        15 * time.Second,
		ForecastHorizon: 10 * time.Minute,
		Stale:           45 * time.Second,
		ReplicaKeys:     []string{schema.AttrServiceInstanceID, schema.AttrServerAddress},
		StateWindow:     15 * time.Minute,
		MaxReplicas:     4096,
		MaxTenants:      1000,
		MaxModels:       200,
		MaxLabelLength:  256,
		Incidents:       IncidentsConfig{OpenAfter: 2, CloseAfter: 2, UpdateEvery: 4},
		Detectors: DetectorsConfig{
			SaturationWaiting: 4, SaturationGrowth: 1.5, KVThrashUtilization: 0.95, HitRatioCollapse: 0.5,
			HitRatioUsualMin: 0.3, GPUIdleUtilization: 0.2, GPUMemoryPressure: 0.97, TPImbalanceSkew: 0.3, PipelineBubbleSkew: 0.3, ClockDrop: 0.7, CollectiveWaitShare: 0.2, StarvationTTFTFactor: 3,
			StarvationQueueFactor: 10, StarvationMinSeconds: 1, StarvationMinRequests: 10, FairnessTokenShare: 0.5, FairnessMinQueueSeconds: 0.5,
			TrendWindow: 5 * time.Minute, OOMFrom: 0.8, OOMHorizon: 10 * time.Minute,
			ClearFraction: 0.8, SuggestedKVMemoryStep: 0.04,
		},
		Autoscaling: AutoscalingConfig{
			TargetUtilization: 0.8, DrainTime: 10 * time.Minute, DemandHalfLife: 30 * time.Second, CapacityHalfLife: 30 * time.Minute,
			TargetWaitingPerReplica: 2, TargetKVUtilization: 0.85, ScaleDownBelow: 0.4, MinReplicas: 1, MaxReplicas: 64,
		},
		Cost: CostConfig{DefaultGPUPricePerHour: 0, GPUsPerReplica: 1, GPUPricePerHour: map[string]float64{}},
	}
}

// Validate says which field is wrong and why.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Interval <= 0 {
		bad("interval: must be positive, got %s", c.Interval)
	}
	if c.ForecastHorizon < 0 {
		bad("forecast_horizon: must not be negative, got %s", c.ForecastHorizon)
	}
	if c.Stale < c.Interval {
		bad("stale: must be at least the interval (%s), got %s", c.Interval, c.Stale)
	}
	if len(c.ReplicaKeys) == 0 {
		bad("replica_keys: at least one resource attribute is needed")
	}
	if c.StateWindow < 4*c.Interval {
		bad("state_window: must hold at least 4 intervals, got %s", c.StateWindow)
	}
	if c.MaxReplicas <= 0 || c.MaxTenants <= 0 || c.MaxModels <= 0 || c.MaxLabelLength <= 0 {
		bad("max_replicas, max_tenants, max_models and max_label_length: must be positive, got %d, %d, %d and %d",
			c.MaxReplicas, c.MaxTenants, c.MaxModels, c.MaxLabelLength)
	}
	if c.Incidents.OpenAfter < 1 || c.Incidents.CloseAfter < 1 || c.Incidents.UpdateEvery < 0 {
		bad("incidents: open_after and close_after must be at least 1, update_every not negative")
	}
	d := c.Detectors
	for name, v := range map[string]float64{
		"kv_thrash_utilization": d.KVThrashUtilization, "hit_ratio_collapse": d.HitRatioCollapse,
		"hit_ratio_usual_min": d.HitRatioUsualMin, "gpu_idle_utilization": d.GPUIdleUtilization, "gpu_memory_pressure": d.GPUMemoryPressure,
		"tp_imbalance_skew": d.TPImbalanceSkew, "pipeline_bubble_skew": d.PipelineBubbleSkew, "clock_drop": d.ClockDrop, "collective_wait_share": d.CollectiveWaitShare, "clear_fraction": d.ClearFraction, "oom_from": d.OOMFrom,
	} {
		if !(v > 0 && v < 1) {
			bad("detectors.%s: must be between 0 and 1 (exclusive), got %v", name, v)
		}
	}
	if d.SaturationWaiting <= 0 || d.SaturationGrowth < 1 || d.StarvationTTFTFactor < 1 || d.StarvationQueueFactor < 1 {
		bad("detectors: saturation_waiting must be positive; saturation_growth, starvation_ttft_factor and starvation_queue_factor at least 1")
	}
	if d.StarvationMinSeconds < 0 || d.StarvationMinRequests < 0 || d.FairnessMinQueueSeconds < 0 || !(d.FairnessTokenShare > 0 && d.FairnessTokenShare < 1) {
		bad("detectors: starvation_min_seconds, starvation_min_requests, fairness_min_queue_seconds must not be negative; fairness_token_share in (0, 1)")
	}
	if d.TrendWindow < c.Interval || d.OOMHorizon <= 0 {
		bad("detectors: trend_window must be at least the interval and oom_horizon positive")
	}
	a := c.Autoscaling
	if a.TargetWaitingPerReplica <= 0 || !(a.TargetKVUtilization > 0 && a.TargetKVUtilization <= 1) || !(a.ScaleDownBelow > 0 && a.ScaleDownBelow < 1) {
		bad("autoscaling: target_waiting_per_replica must be positive, target_kv_utilization in (0, 1], scale_down_below in (0, 1)")
	}
	if !(a.TargetUtilization > 0 && a.TargetUtilization <= 1) || a.DrainTime <= 0 || a.DemandHalfLife <= 0 || a.CapacityHalfLife <= 0 {
		bad("autoscaling: target_utilization must be in (0, 1], drain_time, demand_half_life and capacity_half_life positive")
	}
	if a.MinReplicas < 0 || a.MaxReplicas < a.MinReplicas || a.MaxReplicas == 0 {
		bad("autoscaling: need 0 <= min_replicas <= max_replicas and max_replicas > 0, got %d and %d", a.MinReplicas, a.MaxReplicas)
	}
	if c.Cost.DefaultGPUPricePerHour < 0 || c.Cost.GPUsPerReplica < 1 {
		bad("cost: default_gpu_price_per_hour must not be negative and gpus_per_replica at least 1")
	}
	for name, p := range c.Cost.GPUPricePerHour {
		if p < 0 {
			bad("cost.gpu_price_per_hour[%q]: must not be negative", name)
		}
	}
	return errors.Join(errs...)
}
