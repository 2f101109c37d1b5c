package fleetsim

import "math"

// ModelSpec is what step times and KV-cache size depend on in the served model.
type ModelSpec struct {
	Name          string  // served model name, as engines label their series
	Params        float64 // parameter count
	Layers        int
	Hidden        int
	KVHeads       int
	HeadDim       int
	BytesPerParam float64 // weights (2 for bf16, 1 for FP8)
	KVBytesPerVal float64 // KV-cache element size (2 for bf16)
	TensorSpeedup float64 // tensor-core throughput relative to bf16 (2 for FP8 weights); 0 means 1
	MaxModelLen   int
}

// KVBytesPerToken is the KV cache one token occupies across all layers (keys and values).
func (m ModelSpec) KVBytesPerToken() float64 {
	return 2 * float64(m.Layers*m.KVHeads*m.HeadDim) * m.KVBytesPerVal
}

func (m ModelSpec) speedup() float64 {
	if m.TensorSpeedup > 0 {
		return m.TensorSpeedup
	}
	return 1
}

// WeightBytes is the size of the weights, read once per step.
func (m ModelSpec) WeightBytes() float64 { return m.Params * m.BytesPerParam }

// GPUSpec is one accelerator as the step-time model and dcgm-exporter see it.
type GPUSpec struct {
	Name          string  // dcgm-exporter's modelName label
	MemoryMiB     int     // framebuffer
	PeakFLOPS     float64 // dense bf16
	MFU           float64 // share of PeakFLOPS prefill attains
	HBMBytesPerS  float64
	HBMEfficiency float64 // share of HBM bandwidth decode attains
	NVLinkBytesS  float64 // per direction, for tensor-parallel all-reduce
	MaxSMClockMHz int
	IdleSMClock   int
	MemClockMHz   int
	TDPWatts      float64
	IdleWatts     float64
}

// H100SXM is the default GPU.
func H100SXM() GPUSpec {
	return GPUSpec{
		Name: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, PeakFLOPS: 989e12, MFU: 0.45, HBMBytesPerS: 3.35e12,
		HBMEfficiency: 0.75, NVLinkBytesS: 450e9, MaxSMClockMHz: 1980, IdleSMClock: 345, MemClockMHz: 2619,
		TDPWatts: 700, IdleWatts: 72,
	}
}

// EngineParams are the scheduler and cache settings every engine core here shares (vLLM's names).
type EngineParams struct {
	BlockSize            int     // tokens per KV block
	MaxNumSeqs           int     // most requests in a batch
	MaxNumBatchedTokens  int     // token budget per step; long prompts are prefilled in chunks of it
	GPUMemoryUtilization float64 // share of GPU memory the engine may use (weights + activations + KV)
	ActivationMiB        float64 // reserved per GPU for activations and CUDA graphs
	StepOverhead         float64 // seconds of CPU work per step (scheduling, sampling, detokenizing)
	FrontendOverhead     float64 // seconds from HTTP arrival to the engine queue, plus per prompt token
	FrontendPerToken     float64
}

// DefaultEngineParams are vLLM V1's online-serving defaults on an H100.
func DefaultEngineParams() EngineParams {
	return EngineParams{
		BlockSize: 16, MaxNumSeqs: 48, MaxNumBatchedTokens: 2048, GPUMemoryUtilization: 0.9, ActivationMiB: 3072,
		StepOverhead: 0.0015, FrontendOverhead: 0.0008, FrontendPerToken: 0.2e-6,
	}
}

// kvBlocks is the number of KV blocks a replica of tp GPUs holds: what is left of each GPU's share after
// its slice of the weights and the activation reserve, divided among tokens whose KV is split across ranks.
func kvBlocks(m ModelSpec, g GPUSpec, e EngineParams, tp int) int {
	perGPU := float64(g.MemoryMiB)*(1<<20)*e.GPUMemoryUtilization - m.WeightBytes()/float64(tp) - e.ActivationMiB*(1<<20)
	if perGPU <= 0 {
		return 0
	}
	tokens := perGPU / (m.KVBytesPerToken() / float64(tp))
	return int(tokens) / e.BlockSize
}

// batchShape is what a step's duration depends on.
type batchShape struct {
	prefillTokens int     // prompt (or recomputed) tokens processed this step
	decodeSeqs    int     // requests producing their next token from one new token
	ctxRead       float64 // KV tokens the step's attention reads
	attnFlops     float64 // attention FLOPs of the prefill chunks (quadratic in their position)
}

// stepTimes returns how long a step takes: actual (with throttled clocks and a straggler rank), without the
// throttling, and with neither. The differences are what the ground truth charges to gpu_throttling and to
// collective_wait.
//
// Each rank is bound by the slower of its compute (FLOPs at the attainable MFU) and its memory traffic
// (its slice of the weights plus the KV it reads); ranks meet at two all-reduces per layer, so the step waits
// for the slowest rank. A throttled SM clock slows the whole rank: at a lower clock the kernels neither reach
// their FLOPs nor keep HBM saturated, a simplification that keeps decode (memory-bound) sensitive to it as
// it is in practice.
func stepTimes(m ModelSpec, g GPUSpec, e EngineParams, tp int, b batchShape, clock []float64, straggle []float64) (actual, unthrottled, balanced float64) {
	tokens := float64(b.prefillTokens + b.decodeSeqs)
	flops := (2*m.Params*tokens + b.attnFlops) / float64(tp)
	compute := flops / (g.PeakFLOPS * m.speedup() * g.MFU)
	mem := (m.WeightBytes()/float64(tp) + b.ctxRead*m.KVBytesPerToken()/float64(tp)) / (g.HBMBytesPerS * g.HBMEfficiency)
	rank := math.Max(compute, mem)
	allReduce := allReduceTime(m, g, tp, tokens)
	balanced = rank + allReduce + e.StepOverhead
	slowest, slowestThrottled := rank, rank
	for r := 0; r < tp; r++ {
		s := rank * (1 + straggle[r])
		slowest = math.Max(slowest, s)
		slowestThrottled = math.Max(slowestThrottled, s/clock[r])
	}
	unthrottled = slowest + allReduce + e.StepOverhead
	actual = slowestThrottled + allReduce + e.StepOverhead
	return actual, unthrottled, balanced
}

// allReduceTime is the time a step's all-reduces take (two per layer over the step's tokens' activations)
// once every rank has arrived; 0 without tensor parallelism.
func allReduceTime(m ModelSpec, g GPUSpec, tp int, tokens float64) float64 {
	if tp < 2 {
		return 0
	}
	bytes := tokens * float64(m.Hidden) * 2 * 2 * float64(tp-1) / float64(tp)
	return 2 * float64(m.Layers) * (8e-6 + bytes/g.NVLinkBytesS)
}

// attentionFlops approximates the attention FLOPs of prefilling n tokens that start at position start:
// every token attends to all before it (QK^T and AV, 2 FLOPs per multiply-add, all layers and heads).
func attentionFlops(m ModelSpec, start, n int) float64 {
	meanPos := float64(start) + float64(n)/2
	return 4 * float64(m.Layers) * float64(m.Hidden) * float64(n) * meanPos
}
