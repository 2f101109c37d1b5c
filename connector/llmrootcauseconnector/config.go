package llmrootcauseconnector

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/servescope/servescope/internal/schema"
)

// Config configures the llm_root_cause connector. Every bound on memory is here.
type Config struct {
	// ReplicaKeys name the resource attributes that identify a replica, on spans and metrics alike; the first
	// present wins. With one replica in the state (a sidecar), spans join it whatever they carry.
	ReplicaKeys []string `mapstructure:"replica_keys"`
	// TenantKeys are looked up, in order, on the request span, its parent span, a gateway span with the same
	// request id, and the resources of those spans.
	TenantKeys []string `mapstructure:"tenant_keys"`
	// PromptFamilyKeys name the attribute that groups prompts sharing a prefix, looked up like tenants.
	PromptFamilyKeys []string `mapstructure:"prompt_family_keys"`

	// MaxWait is how long a span may wait for the state snapshot after its end (one scrape interval).
	MaxWait time.Duration `mapstructure:"max_wait"`
	// MaxPendingSpans bounds the spans waiting; when full, the oldest batch goes out with what is known.
	MaxPendingSpans int `mapstructure:"max_pending_spans"`

	// StateWindow is how much replica and GPU state is kept; MaxReplicas how many replicas and GPUs each.
	StateWindow time.Duration `mapstructure:"state_window"`
	MaxReplicas int           `mapstructure:"max_replicas"`

	SLO      SLOConfig      `mapstructure:"slo"`
	Baseline BaselineConfig `mapstructure:"baseline"`
	Rules    RulesConfig    `mapstructure:"rules"`

	// Dimensions are the attributes the metrics carry, from: gen_ai.request.model, llm.tenant, llm.engine.name,
	// service.instance.id.
	Dimensions []string `mapstructure:"dimensions"`
	// MaxTenants caps the tenants with series and baselines of their own; the others fold into `_other` there
	// (spans and logs keep the tenant's name). The busiest tenants of the last baseline.window hold the
	// places, not the first ones seen.
	MaxTenants int `mapstructure:"max_tenants"`
	// MaxLabelLength caps, in bytes, every tenant, prompt family, model and replica name the connector reads
	// from spans and metrics; longer values are cut (at a character boundary) before they are stored or sent.
	MaxLabelLength int `mapstructure:"max_label_length"`
	// MaxRequestTokens and MaxRequestDuration are the bounds of one physical request: a span claiming more
	// tokens or a longer latency (or a negative, NaN or infinite one) is not explained or counted; it goes on
	// unchanged, and the first of each kind is reported.
	MaxRequestTokens   int64         `mapstructure:"max_request_tokens"`
	MaxRequestDuration time.Duration `mapstructure:"max_request_duration"`
	// MaxPromptFamilies caps the prompt families llm.tenant.prompt_tokens is split by; later ones fold into
	// `_other`.
	MaxPromptFamilies int `mapstructure:"max_prompt_families"`
	// MaxSeries caps the series per metric; later ones fold into one overflow series.
	MaxSeries int `mapstructure:"max_series"`
	// MaxModels caps the models with their own baselines.
	MaxModels int `mapstructure:"max_models"`
	// RequestIDCache bounds the request ids (and gateway spans) remembered to link engine and gateway spans.
	RequestIDCache int `mapstructure:"request_id_cache"`
	// HistogramBuckets are the phase-duration bucket bounds, in seconds.
	HistogramBuckets []float64 `mapstructure:"histogram_buckets"`
	// MetricsFlushInterval is how often the cumulative metrics go out.
	MetricsFlushInterval time.Duration `mapstructure:"metrics_flush_interval"`
}

// SLOConfig holds latency limits; a zero limit means "what the request should have taken" (see BaselineConfig).
type SLOConfig struct {
	Default Limits            `mapstructure:"default"`
	Models  map[string]Limits `mapstructure:"models"`
}

// Limits are per-request latency limits.
type Limits struct {
	TTFT time.Duration `mapstructure:"ttft"`
	TPOT time.Duration `mapstructure:"tpot"`
	E2E  time.Duration `mapstructure:"e2e"`
}

// BaselineConfig shapes what "usual" and "expected" mean per model when no SLO decides: levels learned from
// requests that were not slow, decaying slowly.
type BaselineConfig struct {
	// Window is the recent past whose busiest tenants, prompt families and models hold their own slots.
	Window time.Duration `mapstructure:"window"`
	// HalfLife is how fast the healthy levels forget: a request this old weighs half as much as a new one.
	HalfLife time.Duration `mapstructure:"half_life"`
	// MinSamples is how many healthy requests a model needs before its expected times are used.
	MinSamples int `mapstructure:"min_samples"`
	// SlowFactor and SlowMargin: without an SLO, a request is slow when its TTFT, TPOT or e2e exceeds what it
	// should have taken both by this factor and by this margin.
	SlowFactor float64 `mapstructure:"slow_factor"`
	SlowMargin Limits  `mapstructure:"slow_margin"`
	// Fallback are the limits used until a model has min_samples healthy requests (0: not judged on that).
	Fallback Limits `mapstructure:"fallback"`
}

// RulesConfig are the root-cause thresholds; README.md explains each rule.
type RulesConfig struct {
	QueueShare       float64       `mapstructure:"queue_share"`
	MinQueue         time.Duration `mapstructure:"min_queue"`
	TenantShare      float64       `mapstructure:"tenant_share"`
	KVUtilization    float64       `mapstructure:"kv_utilization"`
	PrefillShare     float64       `mapstructure:"prefill_share"`
	DecodeShare      float64       `mapstructure:"decode_share"`
	CacheMissShare   float64       `mapstructure:"cache_miss_share"`
	CacheUsualShare  float64       `mapstructure:"cache_usual_share"`
	HitRatioCollapse float64       `mapstructure:"hit_ratio_collapse"`
	LongQuantile     float64       `mapstructure:"long_quantile"`
	TPOTFactor       float64       `mapstructure:"tpot_factor"`
	// ClockDrop: a busy GPU whose SM clock fell below this share of its peak is throttled.
	ClockDrop float64 `mapstructure:"clock_drop"`
	// FamilyPaceFactor: without a cached-token count, a prefill this many times slower per prompt token than
	// its prompt family's usual pace is a prefix-cache miss.
	FamilyPaceFactor float64 `mapstructure:"family_pace_factor"`
	// CollectiveWaitShare: a replica whose collectives spent at least this share of the time waiting for a
	// late rank (nccl receiver's arrival skew) makes its engine time collective_wait.
	CollectiveWaitShare float64 `mapstructure:"collective_wait_share"`
	// MinTenantRequests is how many other requests must have been admitted before contention is judged.
	MinTenantRequests int `mapstructure:"min_tenant_requests"`
	// MinCacheSamples is how many requests with cached-token counts a tenant or prompt family needs before
	// its usual hit share counts as evidence.
	MinCacheSamples int `mapstructure:"min_cache_samples"`
}

var allowedDimensions = map[string]bool{
	schema.AttrGenAIRequestModel: true, schema.AttrLLMTenant: true, schema.AttrLLMEngineName: true, schema.AttrServiceInstanceID: true,
}

func createDefaultConfig() *Config {
	return &Config{
		ReplicaKeys:      []string{schema.AttrServiceInstanceID, schema.AttrServerAddress},
		TenantKeys:       []string{schema.AttrLLMTenant, "tenant.id", "tenant", "enduser.id"},
		PromptFamilyKeys: []string{schema.AttrLLMPromptFamily},
		MaxWait:          10 * time.Second,
		MaxPendingSpans:  20000,
		StateWindow:      15 * time.Minute,
		MaxReplicas:      4096,
		Baseline: BaselineConfig{
			Window: 10 * time.Minute, HalfLife: 2 * time.Hour, MinSamples: 50, SlowFactor: 2,
			SlowMargin: Limits{TTFT: time.Second, TPOT: 20 * time.Millisecond, E2E: 2 * time.Second},
			Fallback:   Limits{TTFT: 2 * time.Second, TPOT: 100 * time.Millisecond},
		},
		Rules: RulesConfig{
			QueueShare: 0.25, MinQueue: 100 * time.Millisecond, TenantShare: 0.6, KVUtilization: 0.9,
			PrefillShare: 0.4, DecodeShare: 0.5, CacheMissShare: 0.1, CacheUsualShare: 0.3, HitRatioCollapse: 0.5,
			LongQuantile: 0.9, TPOTFactor: 1.5, ClockDrop: 0.7, CollectiveWaitShare: 0.2, FamilyPaceFactor: 4, MinTenantRequests: 3, MinCacheSamples: 20,
		},
		Dimensions:           []string{schema.AttrGenAIRequestModel, schema.AttrLLMTenant, schema.AttrLLMEngineName, schema.AttrServiceInstanceID},
		MaxTenants:           1000,
		MaxLabelLength:       256,
		MaxRequestTokens:     100_000_000,
		MaxRequestDuration:   24 * time.Hour,
		MaxPromptFamilies:    100,
		MaxSeries:            10000,
		MaxModels:            200,
		RequestIDCache:       65536,
		HistogramBuckets:     []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300},
		MetricsFlushInterval: 15 * time.Second,
	}
}

// Validate says which field is wrong and why.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.ReplicaKeys) == 0 {
		bad("replica_keys: at least one resource attribute is needed")
	}
	if len(c.TenantKeys) == 0 {
		bad("tenant_keys: at least one attribute is needed")
	}
	if c.MaxWait < 0 {
		bad("max_wait: must not be negative, got %s", c.MaxWait)
	}
	positive := map[string]int{
		"max_pending_spans": c.MaxPendingSpans, "max_replicas": c.MaxReplicas, "max_tenants": c.MaxTenants,
		"max_prompt_families": c.MaxPromptFamilies, "max_series": c.MaxSeries, "max_models": c.MaxModels,
		"request_id_cache": c.RequestIDCache, "baseline.min_samples": c.Baseline.MinSamples, "max_label_length": c.MaxLabelLength,
		"max_request_tokens": int(min(c.MaxRequestTokens, math.MaxInt32)),
	}
	for _, name := range slices.Sorted(maps.Keys(positive)) {
		if positive[name] <= 0 {
			bad("%s: must be positive, got %d", name, positive[name])
		}
	}
	durations := map[string]time.Duration{"max_request_duration": c.MaxRequestDuration, "state_window": c.StateWindow, "baseline.window": c.Baseline.Window, "baseline.half_life": c.Baseline.HalfLife, "metrics_flush_interval": c.MetricsFlushInterval}
	for _, name := range slices.Sorted(maps.Keys(durations)) {
		if durations[name] <= 0 {
			bad("%s: must be positive, got %s", name, durations[name])
		}
	}
	fractions := map[string]float64{
		"rules.queue_share":  c.Rules.QueueShare,
		"rules.tenant_share": c.Rules.TenantShare, "rules.kv_utilization": c.Rules.KVUtilization, "rules.prefill_share": c.Rules.PrefillShare,
		"rules.decode_share": c.Rules.DecodeShare, "rules.cache_miss_share": c.Rules.CacheMissShare, "rules.cache_usual_share": c.Rules.CacheUsualShare,
		"rules.hit_ratio_collapse": c.Rules.HitRatioCollapse, "rules.long_quantile": c.Rules.LongQuantile,
		"rules.clock_drop": c.Rules.ClockDrop, "rules.collective_wait_share": c.Rules.CollectiveWaitShare,
	}
	for _, name := range slices.Sorted(maps.Keys(fractions)) {
		if v := fractions[name]; !(v > 0 && v < 1) {
			bad("%s: must be between 0 and 1 (exclusive), got %v", name, v)
		}
	}
	for name, v := range map[string]float64{
		"rules.tpot_factor": c.Rules.TPOTFactor, "baseline.slow_factor": c.Baseline.SlowFactor,
		"rules.family_pace_factor": c.Rules.FamilyPaceFactor,
	} {
		if v < 1 {
			bad("%s: must be at least 1, got %v", name, v)
		}
	}
	if len(c.Dimensions) > maxDimensions {
		bad("dimensions: at most %d, got %d", maxDimensions, len(c.Dimensions))
	}
	seenDim := map[string]bool{}
	for _, d := range c.Dimensions {
		if seenDim[d] {
			bad("dimensions: %q listed twice", d)
		}
		seenDim[d] = true
		if !allowedDimensions[d] {
			bad("dimensions: %q is not one of %v", d, slices.Sorted(maps.Keys(allowedDimensions)))
		}
	}
	if len(c.HistogramBuckets) == 0 {
		bad("histogram_buckets: at least one bound is needed")
	}
	for i := 1; i < len(c.HistogramBuckets); i++ {
		if c.HistogramBuckets[i] <= c.HistogramBuckets[i-1] {
			bad("histogram_buckets: bounds must increase, %v follows %v", c.HistogramBuckets[i], c.HistogramBuckets[i-1])
			break
		}
	}
	checkLimits := func(where string, l Limits) {
		if l.TTFT < 0 || l.TPOT < 0 || l.E2E < 0 {
			bad("%s: limits must not be negative", where)
		}
	}
	checkLimits("slo.default", c.SLO.Default)
	checkLimits("baseline.slow_margin", c.Baseline.SlowMargin)
	checkLimits("baseline.fallback", c.Baseline.Fallback)
	for model, l := range c.SLO.Models {
		checkLimits("slo.models."+model, l)
	}
	return errors.Join(errs...)
}

// limits returns the SLO for a model, falling back to the default per limit.
func (c *Config) limits(model string) Limits {
	l := c.SLO.Default
	if m, ok := c.SLO.Models[model]; ok {
		if m.TTFT > 0 {
			l.TTFT = m.TTFT
		}
		if m.TPOT > 0 {
			l.TPOT = m.TPOT
		}
		if m.E2E > 0 {
			l.E2E = m.E2E
		}
	}
	return l
}
