package fleetsim

import (
	"errors"
	"fmt"
	"time"

	"github.com/servescope/servescope/internal/schema"
)

// Engine names, as the simulator's flags and the ground truth spell them: the schema's engine names.
const (
	EngineVLLM     = schema.EngineVLLM
	EngineSGLang   = schema.EngineSglang
	EngineTRTLLM   = schema.EngineTensorrtLLM
	EngineLlamaCpp = schema.EngineLlamaCpp
)

// Engines lists the engines a replica can run.
func Engines() []string { return []string{EngineVLLM, EngineSGLang, EngineTRTLLM, EngineLlamaCpp} }

// SLO says when a request counts as slow; the root-cause connector should be configured with the same
// numbers when its accuracy is measured against the ground truth.
type SLO struct {
	TTFT float64 `json:"ttft_s"` // seconds
	TPOT float64 `json:"tpot_s"` // seconds per output token after the first
	E2E  float64 `json:"e2e_s"`  // seconds
}

// Reference is the "normal" request the ground truth measures excess latency against.
type Reference struct {
	PromptTokens int // prompts computed beyond this are long (long_prompt)
	OutputTokens int // outputs beyond this are long (long_generation)
}

// Config is everything a fleet is built from. Start from DefaultConfig.
type Config struct {
	Seed     uint64
	Scenario Scenario
	// Engines are the replicas' engines, one entry per replica.
	Engines []string
	// TP is the tensor-parallel size of every replica (raised to the scenario's MinTP).
	TP       int
	Duration time.Duration
	// Drain is how long requests still running at Duration may take to finish (arrivals have stopped).
	Drain  time.Duration
	Model  ModelSpec
	GPU    GPUSpec
	Engine EngineParams
	// LlamaCppSlots is llama-server's --parallel: it serves at most this many requests at once.
	LlamaCppSlots int
	SLO           SLO
	Reference     Reference
	// Epoch is the wall-clock time of virtual time zero (span timestamps, _created series). Zero means the
	// time New is called.
	Epoch time.Time
	// NCCLDir, when set, is where every replica with tensor parallelism (TP >= 2) writes NCCL Inspector
	// records, one file per rank process (<NCCLDir>/<node>-pid<pid>.log), as the Inspector profiler plugin
	// does in verbose mode; see nccl.go for the model. New creates the directory.
	NCCLDir string
	// Workload, when set, is the requests that arrive instead of the scenario's tenants' (a recorded
	// workload replayed on a fleet of another shape); the scenario's faults still apply. Duration must
	// reach past the last arrival.
	Workload []Arrival
	// Router is the gateway's balancing (see Routers); "" is least_outstanding.
	Router string
	// KVBlocks, when positive, is every replica's KV cache in blocks instead of what the model leaves on the GPUs.
	KVBlocks int
}

// Arrival is one request of a given workload.
type Arrival struct {
	AtS    float64 // seconds after the start
	Tenant string
	Family string
	// PromptTokens is the prompt's length, SharedPrefixTokens how much of its start the family's requests
	// share (a prefix cache serves it once cached), OutputTokens the answer's length.
	PromptTokens, SharedPrefixTokens, OutputTokens int
}

// The gateway's balancing rules a fleet can be given.
const (
	RouterLeastOutstanding = "least_outstanding" // fewest waiting plus running, ties round robin
	RouterRoundRobin       = "round_robin"
	RouterLeastWaiting     = "least_waiting" // shortest queue, then fewest running
	// RouterPrefixAffinity sends a prompt family to one replica (by the family's hash) unless that
	// replica's queue is two or more longer than the shortest, then to the least outstanding.
	RouterPrefixAffinity = "prefix_affinity"
)

// Routers lists the routers, for flags and messages.
var Routers = []string{RouterLeastOutstanding, RouterRoundRobin, RouterLeastWaiting, RouterPrefixAffinity}

// DefaultConfig is a four-replica vLLM fleet running the baseline for a minute.
func DefaultConfig() Config {
	sc, _ := LookupScenario("baseline")
	return Config{
		Seed:          1,
		Scenario:      sc,
		Engines:       []string{EngineVLLM, EngineVLLM, EngineVLLM, EngineVLLM},
		TP:            1,
		Duration:      time.Minute,
		Drain:         30 * time.Second,
		Model:         Qwen25_32B_FP8(),
		GPU:           H100SXM(),
		Engine:        DefaultEngineParams(),
		LlamaCppSlots: 8,
		SLO:           SLO{TTFT: 1.0, TPOT: 0.05, E2E: 40},
		Reference:     Reference{PromptTokens: 4096, OutputTokens: 512},
	}
}

// Qwen25_32B_FP8 is the default model: Qwen2.5-32B-Instruct with FP8 weights on one H100, which leaves a
// KV cache of about 140k tokens, small enough that long contexts fill it as they do in production.
func Qwen25_32B_FP8() ModelSpec { //nolint:revive // var-naming: the underscores keep the model's name readable (2.5, 32B, FP8)
	return ModelSpec{
		Name: "Qwen/Qwen2.5-32B-Instruct", Params: 32.8e9, Layers: 64, Hidden: 5120, KVHeads: 8, HeadDim: 128,
		BytesPerParam: 1, KVBytesPerVal: 2, TensorSpeedup: 2, MaxModelLen: 32768,
	}
}

// ParseEngines expands a comma-separated engine list over n replicas, repeating it in order
// ("vllm,sglang" over 3 replicas is vllm, sglang, vllm). Short names are accepted (trtllm, llamacpp).
func ParseEngines(list []string, n int) ([]string, error) {
	if len(list) == 0 {
		return nil, errors.New("no engines")
	}
	if n <= 0 {
		n = len(list)
	}
	alias := map[string]string{
		"vllm": EngineVLLM, "sglang": EngineSGLang, "tensorrt_llm": EngineTRTLLM, "trtllm": EngineTRTLLM,
		"trtllm-serve": EngineTRTLLM, "llama_cpp": EngineLlamaCpp, "llamacpp": EngineLlamaCpp, "llama.cpp": EngineLlamaCpp,
	}
	out := make([]string, n)
	for i := range out {
		e, ok := alias[list[i%len(list)]]
		if !ok {
			return nil, fmt.Errorf("unknown engine %q (have %v)", list[i%len(list)], Engines())
		}
		out[i] = e
	}
	return out, nil
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Engines) == 0 {
		errs = append(errs, errors.New("no replicas"))
	}
	for _, e := range c.Engines {
		if _, err := ParseEngines([]string{e}, 1); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Duration <= 0 {
		errs = append(errs, errors.New("duration must be positive"))
	}
	if c.TP < 1 {
		errs = append(errs, errors.New("tp must be at least 1"))
	}
	if len(c.Scenario.Tenants) == 0 && len(c.Workload) == 0 {
		errs = append(errs, errors.New("scenario has no tenants (build it with LookupScenario)"))
	}
	if c.Engine.BlockSize <= 0 || c.Engine.MaxNumSeqs <= 0 || c.Engine.MaxNumBatchedTokens <= 0 {
		errs = append(errs, errors.New("engine parameters must be positive"))
	}
	if c.Scenario.ThrottleReplica >= len(c.Engines) || c.Scenario.StragglerReplica >= len(c.Engines) {
		errs = append(errs, fmt.Errorf("scenario %s targets a replica the fleet does not have", c.Scenario.Name))
	}
	if c.Router != "" && !contains(Routers, c.Router) {
		errs = append(errs, fmt.Errorf("router %q: want one of %v", c.Router, Routers))
	}
	for i, a := range c.Workload {
		if a.AtS < 0 || a.AtS >= c.Duration.Seconds() || a.PromptTokens < 1 || a.OutputTokens < 1 {
			errs = append(errs, fmt.Errorf("workload request %d: want 0 <= arrival < duration and positive lengths", i))
			break
		}
	}
	return errors.Join(errs...)
}
