package nvmlreceiver

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/servescope/servescope/internal/schema"
)

// Config of the nvml receiver.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`

	// LibraryPath overrides where libnvidia-ml.so is loaded from ("" = the dynamic loader's search path).
	LibraryPath string `mapstructure:"library_path"`
	// Required makes a missing driver or library a start failure instead of a warning. Off by default, so
	// one binary and one config run on GPU and CPU nodes alike.
	Required bool `mapstructure:"required"`
	// ProcRoot is where the host's /proc is visible (e.g. /host/proc in a container), for process attribution.
	ProcRoot string `mapstructure:"proc_root"`
	// Replicas map GPU processes to the engine replicas that own them.
	Replicas []ReplicaRule `mapstructure:"replicas"`

	_ struct{}
}

// ReplicaRule attributes a GPU process to a replica when every matcher that is set matches.
type ReplicaRule struct {
	// ProcessName is a regular expression matched against the process' command line.
	ProcessName string `mapstructure:"process_name"`
	// Port matches a process that listens on this TCP port (the engine's serving port).
	Port int `mapstructure:"port"`
	// CgroupContains matches a process whose cgroup path contains this text (a container or pod id).
	CgroupContains string `mapstructure:"cgroup_contains"`

	// ServiceInstanceID is the replica's service.instance.id; it must equal what the engine receiver sets
	// (host:port of its endpoint, unless configured) for the two to join.
	ServiceInstanceID string `mapstructure:"service_instance_id"`
	// Engine is the replica's llm.engine.name.
	Engine string `mapstructure:"engine"`

	// The replica's parallel layout; when set, its GPUs carry their tensor-parallel rank, pipeline stage and
	// group (internal/topology).
	TensorParallelSize   int `mapstructure:"tensor_parallel_size"`
	PipelineParallelSize int `mapstructure:"pipeline_parallel_size"`
	DataParallelSize     int `mapstructure:"data_parallel_size"`
	// GPUs lists the replica's GPU indexes on this node in rank order, where that is not ascending index order.
	GPUs []int `mapstructure:"gpus"`
	// FirstRank is the global rank of this node's first GPU of the replica (node k of a multi-node replica
	// with n GPUs per node: k*n).
	FirstRank int `mapstructure:"first_rank"`

	nameRE *regexp.Regexp
}

// Validate checks every rule, naming it by position.
func (c *Config) Validate() error {
	var errs []error
	if c.CollectionInterval < time.Second {
		errs = append(errs, fmt.Errorf("collection_interval: %s is shorter than NVML's sampling allows (1s minimum)", c.CollectionInterval))
	}
	s, err := schema.Default()
	if err != nil {
		return err
	}
	for i := range c.Replicas {
		r := &c.Replicas[i]
		if r.ProcessName == "" && r.Port == 0 && r.CgroupContains == "" {
			errs = append(errs, fmt.Errorf("replicas[%d]: set at least one of process_name, port, cgroup_contains", i))
		}
		if r.ProcessName != "" {
			re, err := regexp.Compile(r.ProcessName)
			if err != nil {
				errs = append(errs, fmt.Errorf("replicas[%d].process_name: %w", i, err))
			}
			r.nameRE = re
		}
		if r.Port < 0 || r.Port > 65535 {
			errs = append(errs, fmt.Errorf("replicas[%d].port: %d is not a TCP port", i, r.Port))
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
		if r.FirstRank < 0 || ((len(r.GPUs) > 0 || r.FirstRank > 0) && !r.hasLayout()) {
			errs = append(errs, fmt.Errorf("replicas[%d]: gpus and first_rank need a parallel size and first_rank must not be negative", i))
		}
	}
	return errors.Join(errs...)
}
