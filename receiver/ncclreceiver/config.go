package ncclreceiver

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/internal/topology"
)

// Config of the nccl receiver.
type Config struct {
	// Include lists glob patterns of Inspector output files: its JSON files (<host>-pid<pid>.log) and its
	// Prometheus textfiles (nccl_inspector_metrics_<uuid>.prom, recognised by the .prom suffix).
	Include []string `mapstructure:"include"`
	// Exclude lists glob patterns of files to leave alone even though Include matches them.
	Exclude []string `mapstructure:"exclude"`
	// CollectionInterval is how often the files are read and metrics emitted.
	CollectionInterval time.Duration `mapstructure:"collection_interval"`
	// MaxBytesPerInterval bounds how much is read per interval across all files, so that a backlog (a large
	// file found at start, a burst of collectives) is worked off over several intervals instead of at once.
	MaxBytesPerInterval int64 `mapstructure:"max_bytes_per_interval"`
	// MaxRecordsPerInterval bounds the JSON records parsed per interval, for the same reason.
	MaxRecordsPerInterval int `mapstructure:"max_records_per_interval"`
	// MaxFiles bounds how many files are followed at once.
	MaxFiles int `mapstructure:"max_files"`
	// StartAt says where to begin in a JSON file with no checkpoint: beginning or end.
	StartAt string `mapstructure:"start_at"`
	// Storage names a storage extension (file_storage) where read offsets are checkpointed, so that a
	// restart neither loses nor re-reads records. Without it offsets live in memory only.
	Storage *component.ID `mapstructure:"storage"`
	// GPULookup says how a JSON record's process is tied to its GPU: nvml (ask the driver which GPU the
	// pid runs on; only for records written on this host) or none.
	GPULookup string `mapstructure:"gpu_lookup"`
	// MaxSeries bounds the metric series kept (each communicator x operation x size bucket x rank).
	MaxSeries int `mapstructure:"max_series"`
	// Skew configures arrival-skew measurement.
	Skew SkewConfig `mapstructure:"skew"`
	// ExpectRecordsWithin is how long a replica may go without any record before its collective time is
	// declared unobservable (llm.collective.observable=false, reason no_records).
	ExpectRecordsWithin time.Duration `mapstructure:"expect_records_within"`
	// Replicas tie files or hosts to engine replicas and give their parallel layout.
	Replicas []ReplicaRule `mapstructure:"replicas"`

	_ struct{}
}

// SkewConfig configures arrival skew.
type SkewConfig struct {
	// Clocks says whose timestamps may be compared: host (only ranks on the same host, the default) or
	// synchronized (every host; only with PTP-grade clock sync, since NTP's milliseconds swamp the skew).
	Clocks string `mapstructure:"clocks"`
	// Wait is how many intervals a collective waits for the records of its other ranks before its skew is
	// computed from the ranks that did arrive.
	Wait int `mapstructure:"wait_intervals"`
	// MaxPending bounds the collectives waiting for their other ranks.
	MaxPending int `mapstructure:"max_pending"`
	// MinSkew is the skew below which no rank is named late (every collective has some rank that is last
	// by a microsecond; naming it would only add noise).
	MinSkew time.Duration `mapstructure:"min_skew"`
	// History is how many of a rank's own recent operations form its baseline when no other rank of the
	// collective is visible (self_history).
	History int `mapstructure:"history"`
}

// ReplicaRule attributes records to a replica: by the file they come from and/or the host that wrote them.
type ReplicaRule struct {
	// Files is a glob matched against the file's path (e.g. each replica's own NCCL_INSPECTOR_DUMP_DIR).
	Files string `mapstructure:"files"`
	// Host is a regular expression matched against the host name in the records.
	Host string `mapstructure:"host"`

	// ServiceInstanceID is the replica's service.instance.id, as the engine receiver sets it.
	ServiceInstanceID string `mapstructure:"service_instance_id"`
	// Engine is the replica's llm.engine.name.
	Engine string `mapstructure:"engine"`
	// The replica's parallel layout, for tp rank, pipeline stage and group.
	TensorParallelSize   int `mapstructure:"tensor_parallel_size"`
	PipelineParallelSize int `mapstructure:"pipeline_parallel_size"`
	DataParallelSize     int `mapstructure:"data_parallel_size"`
	// AllReduce says which kernels carry the engine's tensor-parallel all-reduce: nccl, custom (the
	// engine's own kernel, which NCCL never sees), or auto (custom for vllm, sglang and tensorrt_llm, whose
	// defaults use custom all-reduce kernels for the small all-reduces of decode; nccl otherwise).
	AllReduce string `mapstructure:"all_reduce"`

	hostRE *regexp.Regexp
}

func (r ReplicaRule) sizes() topology.Sizes {
	return topology.Sizes{TP: r.TensorParallelSize, PP: r.PipelineParallelSize, DP: r.DataParallelSize}
}

// customAllReduce resolves all_reduce: auto.
func (r ReplicaRule) customAllReduce() bool {
	switch r.AllReduce {
	case "custom":
		return true
	case "nccl":
		return false
	}
	switch r.Engine {
	case "vllm", "sglang", "tensorrt_llm":
		return r.sizes().Normalized().TP > 1
	}
	return false
}

// Validate checks the configuration and compiles the host patterns.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Include) == 0 {
		errs = append(errs, errors.New("include: at least one glob pattern is required"))
	}
	for _, list := range [][]string{c.Include, c.Exclude} {
		for _, p := range list {
			if _, err := filepath.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("pattern %q: %w", p, err))
			}
		}
	}
	if c.CollectionInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("collection_interval: %s is too short (100ms minimum)", c.CollectionInterval))
	}
	if c.MaxBytesPerInterval < maxLineBytes {
		// Less than the longest record could never make progress through it.
		errs = append(errs, fmt.Errorf("max_bytes_per_interval: %d is below 256 KiB", c.MaxBytesPerInterval))
	}
	if c.MaxRecordsPerInterval < 1 {
		errs = append(errs, errors.New("max_records_per_interval: must be positive"))
	}
	if c.MaxFiles < 1 {
		errs = append(errs, errors.New("max_files: must be positive"))
	}
	if c.MaxSeries < 1 {
		errs = append(errs, errors.New("max_series: must be positive"))
	}
	if c.StartAt != "beginning" && c.StartAt != "end" {
		errs = append(errs, fmt.Errorf("start_at: %q is neither beginning nor end", c.StartAt))
	}
	if c.GPULookup != "nvml" && c.GPULookup != "none" {
		errs = append(errs, fmt.Errorf("gpu_lookup: %q is neither nvml nor none", c.GPULookup))
	}
	if c.Skew.Clocks != "host" && c.Skew.Clocks != "synchronized" {
		errs = append(errs, fmt.Errorf("skew.clocks: %q is neither host nor synchronized", c.Skew.Clocks))
	}
	if c.Skew.Wait < 1 || c.Skew.MaxPending < 1 || c.Skew.History < 2 {
		errs = append(errs, errors.New("skew: wait_intervals and max_pending must be positive, history at least 2"))
	}
	if c.ExpectRecordsWithin <= 0 {
		errs = append(errs, errors.New("expect_records_within: must be positive"))
	}
	s, err := schema.Default()
	if err != nil {
		return err
	}
	for i := range c.Replicas {
		r := &c.Replicas[i]
		if r.Files == "" && r.Host == "" {
			errs = append(errs, fmt.Errorf("replicas[%d]: set files, host or both", i))
		}
		if r.Files != "" {
			if _, err := filepath.Match(r.Files, ""); err != nil {
				errs = append(errs, fmt.Errorf("replicas[%d].files: %w", i, err))
			}
		}
		if r.Host != "" {
			re, err := regexp.Compile(r.Host)
			if err != nil {
				errs = append(errs, fmt.Errorf("replicas[%d].host: %w", i, err))
			}
			r.hostRE = re
		}
		if r.ServiceInstanceID == "" {
			errs = append(errs, fmt.Errorf("replicas[%d].service_instance_id: required", i))
		}
		if r.Engine != "" && s.Engines[r.Engine] == nil {
			errs = append(errs, fmt.Errorf("replicas[%d].engine: unknown engine %q", i, r.Engine))
		}
		if err := r.sizes().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("replicas[%d]: %w", i, err))
		}
		switch r.AllReduce {
		case "", "auto", "nccl", "custom":
		default:
			errs = append(errs, fmt.Errorf("replicas[%d].all_reduce: %q is not auto, nccl or custom", i, r.AllReduce))
		}
	}
	return errors.Join(errs...)
}

func createDefaultConfig() component.Config {
	return &Config{
		CollectionInterval:    10 * time.Second,
		MaxBytesPerInterval:   16 << 20,
		MaxRecordsPerInterval: 100_000,
		MaxFiles:              1024,
		StartAt:               "beginning",
		GPULookup:             "nvml",
		MaxSeries:             20_000,
		ExpectRecordsWithin:   5 * time.Minute,
		Skew: SkewConfig{
			Clocks:     "host",
			Wait:       2,
			MaxPending: 20_000,
			MinSkew:    50 * time.Microsecond,
			History:    64,
		},
	}
}
