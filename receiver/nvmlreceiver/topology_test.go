package nvmlreceiver

import (
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// byIndex returns each GPU resource's attributes by nvidia.gpu.index.
func byIndex(md pmetric.Metrics) map[int64]map[string]any {
	out := map[int64]map[string]any{}
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		attrs := md.ResourceMetrics().At(i).Resource().Attributes().AsRaw()
		out[attrs[schema.AttrNvidiaGPUIndex].(int64)] = attrs
	}
	return out
}

// One node, two replicas: a tensor 2 x pipeline 2 vLLM on GPUs 2-5 whose second stage idles (low
// utilization), and a TP=2 SGLang on GPUs 6 and 7 whose rank order is given explicitly (7 then 6).
func TestGPUsArePlacedInTheirReplicasLayout(t *testing.T) {
	root := t.TempDir()
	for pid := 100; pid < 104; pid++ {
		fakeProc(t, root, pid, "python3\x00-m\x00vllm.entrypoints.openai.api_server\x00", "0::/pod-a", 8000+pid)
	}
	fakeProc(t, root, 200, "python3\x00-m\x00sglang.launch_server\x00", "0::/pod-b", 30000)
	fakeProc(t, root, 201, "python3\x00-m\x00sglang.launch_server\x00", "0::/pod-b", 30001)
	r := newRig(t, dgxh100.New(), func(c *Config) {
		c.ProcRoot = root
		c.Replicas = []ReplicaRule{
			{CgroupContains: "pod-a", ServiceInstanceID: "a:8000", Engine: "vllm", TensorParallelSize: 2, PipelineParallelSize: 2},
			{CgroupContains: "pod-b", ServiceInstanceID: "b:30000", Engine: "sglang", TensorParallelSize: 2, GPUs: []int{7, 6}},
		}
	})
	r.start(t)
	for i, pid := range []uint32{100, 101, 102, 103} {
		r.states[2+i].procs = []nvml.ProcessInfo{{Pid: pid, UsedGpuMemory: 60 << 30}}
	}
	for i := 2; i < 4; i++ {
		r.states[i].utilRate = 95
	}
	for i := 4; i < 6; i++ {
		r.states[i].utilRate = 12 // the idle second stage
	}
	r.states[6].procs = []nvml.ProcessInfo{{Pid: 201, UsedGpuMemory: 60 << 30}}
	r.states[7].procs = []nvml.ProcessInfo{{Pid: 200, UsedGpuMemory: 60 << 30}}
	md := r.scrape(t)
	gpus := byIndex(md)

	want := map[int64][3]any{ // tp rank, pipeline stage, group
		2: {int64(0), int64(0), "a:8000/dp0/pp0"}, 3: {int64(1), int64(0), "a:8000/dp0/pp0"},
		4: {int64(0), int64(1), "a:8000/dp0/pp1"}, 5: {int64(1), int64(1), "a:8000/dp0/pp1"},
		7: {int64(0), int64(0), "b:30000/dp0/pp0"}, 6: {int64(1), int64(0), "b:30000/dp0/pp0"},
	}
	for index, w := range want {
		g := gpus[index]
		assert.Equal(t, w[0], g[schema.AttrLLMParallelTpRank], "GPU %d", index)
		assert.Equal(t, w[1], g[schema.AttrLLMParallelPpRank], "GPU %d", index)
		assert.Equal(t, w[2], g[schema.AttrLLMParallelGroup], "GPU %d", index)
	}
	assert.Equal(t, int64(2), gpus[2][schema.AttrLLMParallelPpSize])
	for _, index := range []int64{0, 1} {
		assert.NotContains(t, gpus[index], schema.AttrLLMParallelTpRank, "a GPU of no replica has no place")
	}

	// Utilization per stage, as a detector would compare it: the idle stage stands out.
	util := map[int64][]float64{}
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		attrs := md.ResourceMetrics().At(i).Resource().Attributes().AsRaw()
		if attrs[schema.AttrServiceInstanceID] != "a:8000" {
			continue
		}
		util[attrs[schema.AttrLLMParallelPpRank].(int64)] = append(util[attrs[schema.AttrLLMParallelPpRank].(int64)], single(t, md, i, schema.MetricHwGPUUtilization))
	}
	require.Len(t, util[1], 2)
	assert.Less(t, util[1][0], util[0][0]/2)

	// A GPU whose process is missing for a scrape keeps the others' ranks where they were.
	r.states[3].procs = nil
	gpus = byIndex(r.scrape(t))
	assert.Equal(t, int64(1), gpus[4][schema.AttrLLMParallelPpRank])
	assert.Equal(t, int64(0), gpus[4][schema.AttrLLMParallelTpRank])
	assert.NotContains(t, gpus[3], schema.AttrLLMParallelTpRank, "unattributed now: no replica on its resource")
}

func TestLayoutOptionsNeedASize(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Replicas = []ReplicaRule{{Port: 8000, ServiceInstanceID: "a", GPUs: []int{1, 0}}}
	assert.ErrorContains(t, cfg.Validate(), "need a parallel size")
	cfg.Replicas = []ReplicaRule{{Port: 8000, ServiceInstanceID: "a", TensorParallelSize: -1}}
	assert.ErrorContains(t, cfg.Validate(), "negative")
}
