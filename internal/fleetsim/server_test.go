package fleetsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fixtures"
)

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

// TestServedEndpointsWhileRunning serves every engine on free ports while the fleet runs at 20x real time,
// and reads each endpoint the engines' receivers read.
func TestServedEndpointsWhileRunning(t *testing.T) {
	cfg := testConfig(t, "baseline")
	cfg.Engines = Engines()
	f, err := New(cfg)
	require.NoError(t, err)
	eps, err := f.Serve("127.0.0.1", 0)
	require.NoError(t, err)
	defer f.Close()
	require.Len(t, eps, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.RunRealtime(ctx, 20, nil) //nolint:errcheck // ends with ctx

	byEngine := map[string]Endpoint{}
	for _, ep := range eps {
		byEngine[ep.Engine] = ep
		assert.Equal(t, "http://"+ep.Instance, ep.URL)
		assert.NotEqual(t, ep.URL, ep.DCGM)
	}
	vllm := byEngine[EngineVLLM]
	first := get(t, vllm.URL+vllm.MetricsPath)
	time.Sleep(700 * time.Millisecond) // 14 s of simulated traffic
	second := get(t, vllm.URL+vllm.MetricsPath)
	for _, name := range []string{"vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:e2e_request_latency_seconds_count", "vllm:estimated_flops_per_gpu_total"} {
		assert.Greater(t, fixtures.Sum(second, name), fixtures.Sum(first, name), "%s did not grow between scrapes", name)
	}
	parse(t, "dcgm", get(t, vllm.DCGM+"/metrics"))

	sgl := byEngine[EngineSGLang]
	parse(t, "sglang", get(t, sgl.URL+"/metrics"))
	var loads []map[string]any
	require.NoError(t, json.Unmarshal(get(t, sgl.URL+"/v1/loads"), &loads))
	require.Len(t, loads, 1)
	assert.Contains(t, loads[0], "num_running_reqs")
	var info map[string]any
	require.NoError(t, json.Unmarshal(get(t, sgl.URL+"/server_info"), &info))
	assert.Equal(t, sglangVersion, info["version"])

	trt := byEngine[EngineTRTLLM]
	assert.Equal(t, "/prometheus/metrics", trt.MetricsPath)
	parse(t, "trtllm", get(t, trt.URL+trt.MetricsPath))
	var iters []iterationStat
	require.NoError(t, json.Unmarshal(get(t, trt.URL+"/metrics"), &iters))
	assert.NotEmpty(t, iters, "iterations since the start")
	time.Sleep(50 * time.Millisecond)
	var again []iterationStat
	require.NoError(t, json.Unmarshal(get(t, trt.URL+"/metrics"), &again))
	if len(again) > 0 {
		assert.Greater(t, again[0].Iter, iters[len(iters)-1].Iter, "a second read returns only newer iterations")
	}
	var perf []perfRecord
	require.NoError(t, json.Unmarshal(get(t, trt.URL+"/perf_metrics"), &perf))
	if assert.NotEmpty(t, perf) {
		tm := perf[0].PerfMetrics.TimingMetrics
		assert.True(t, tm.ArrivalTime <= tm.FirstScheduledTime && tm.FirstScheduledTime < tm.FirstTokenTime && tm.FirstTokenTime <= tm.LastTokenTime)
	}

	llama := byEngine[EngineLlamaCpp]
	parse(t, "llama.cpp", get(t, llama.URL+"/metrics"))
	var slots []map[string]any
	require.NoError(t, json.Unmarshal(get(t, llama.URL+"/slots"), &slots))
	assert.Len(t, slots, cfg.LlamaCppSlots)
	var props map[string]any
	require.NoError(t, json.Unmarshal(get(t, llama.URL+"/props"), &props))
	assert.Equal(t, llamaBuild, props["build_info"])
}
