package llmnormalizeprocessor

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/golden"
	"github.com/servescope/servescope/internal/mlcmetrics"
	"github.com/servescope/servescope/internal/promtext"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/processor/llmnormalizeprocessor/internal/metadata"
)

// Each engine's capture, converted as its receiver's first scrape converts it (at a fixed time) and stamped
// with the engine's name as the receiver stamps its resource, goes through llm_normalize; the whole output is
// compared with testdata/<case>/expected.yaml. A case runs with the factory's defaults unless
// testdata/<case>/config.yaml has an llm_normalize section. Rewrite with -update.
func TestGoldenEngines(t *testing.T) {
	capture := func(rel string) func(*testing.T) []byte {
		return func(t *testing.T) []byte { return fixtures.Read(t, rel) }
	}
	recorded := func(receiver, file string) func(*testing.T) []byte {
		return func(t *testing.T) []byte {
			body, err := os.ReadFile(filepath.Join("..", "..", "receiver", receiver, "testdata", file))
			require.NoError(t, err)
			return body
		}
	}
	for _, c := range []struct {
		name   string
		body   func(*testing.T) []byte
		engine string // llm.engine.name on the resource; "" for dcgm-exporter, which no engine receiver scrapes
	}{
		{"vllm_stormlog_v1", capture("vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"), schema.EngineVLLM},
		{"vllm_stormlog_v1_drop_unmapped", capture("vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt"), schema.EngineVLLM},
		{"vllm_datadog_v0", capture("vllm/datadog_vllm_metrics.txt"), schema.EngineVLLM},
		{"ray_serve_datadog_ray_vllm", capture("vllm/datadog_ray_vllm_metrics.txt"), schema.EngineRayServe},
		{"ray_serve_2.4x", recorded("rayservereceiver", "metrics_ray_serve_2.4x.txt"), schema.EngineRayServe},
		{"sglang_datadog", capture("sglang/datadog_sglang_metrics.txt"), schema.EngineSglang},
		{"llama_cpp_ik_llama_cpp_pr695", capture("llamacpp/ik_llama_cpp_pr695_comment_metrics_example.txt"), schema.EngineLlamaCpp},
		{"triton_datadog", capture("triton_trtllm/datadog_nvidia_triton_metrics.txt"), schema.EngineTriton},
		{"triton_tensorrtllm_backend_ifb", capture("triton_trtllm/tensorrtllm_backend_README_triton_metrics_example_ifb.txt"), schema.EngineTriton},
		{"tensorrt_llm_2026", recorded("tensorrtllmreceiver", "prometheus_metrics_2026.txt"), schema.EngineTensorrtLLM},
		{"lmdeploy_v0.16.0", recorded("lmdeployreceiver", "metrics_v0.16.0.txt"), schema.EngineLmdeploy},
		{"nim_datadog", capture("nim/datadog_nvidia_nim_metrics.txt"), schema.EngineNim},
		{"kserve_hf_vllm_v0.20", recorded("kservereceiver", "metrics_hf_vllm_v0.20.txt"), schema.EngineKserve},
		{"kserve_qpext_v0.20", recorded("kservereceiver", "metrics_qpext_v0.20.txt"), schema.EngineKserve},
		{"mlc_llm_v0.20.0", recorded("mlcllmreceiver", "metrics_v0.20.0.txt"), schema.EngineMlcLLM},
		{"dynamo_frontend_2026", recorded("dynamoreceiver", "metrics_frontend_2026.txt"), schema.EngineDynamo},
		{"dynamo_worker_vllm_2026", recorded("dynamoreceiver", "metrics_worker_vllm_2026.txt"), schema.EngineDynamo},
		{"dynamo_worker_sglang_2025", recorded("dynamoreceiver", "metrics_worker_sglang_2025.txt"), schema.EngineDynamo},
		{"dcgm_datadog", capture("dcgm/datadog_dcgm_metrics.txt"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join("testdata", c.name)
			cfg := NewFactory().CreateDefaultConfig().(*Config)
			if _, err := os.Stat(filepath.Join(dir, "config.yaml")); err == nil {
				cm, err := confmaptest.LoadConf(filepath.Join(dir, "config.yaml"))
				require.NoError(t, err)
				sub, err := cm.Sub(metadata.Type.String())
				require.NoError(t, err)
				require.NoError(t, sub.Unmarshal(cfg))
				require.NoError(t, cfg.Validate())
			}
			parse := enginescrape.PageParser(promtext.ParseLimit)
			if own, ok := ownPageParsers[c.engine]; ok {
				parse = own
			}
			in := enginescrape.PageToMetrics(parse, c.body(t), enginescrapetest.GoldenScrapeTime.AsTime())
			if c.engine != "" {
				in.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, c.engine)
			}
			golden.Metrics(t, filepath.Join(dir, "expected.yaml"), normalizeOnce(t, cfg, in))
		})
	}
}

// ownPageParsers are the parsers of the engines whose page is not the exposition format, as their
// receivers read it.
var ownPageParsers = map[string]enginescrape.PageParser{schema.EngineMlcLLM: mlcmetrics.Parse}

// normalizeOnce is the processor as the collector builds it, fed one batch.
func normalizeOnce(t *testing.T, cfg *Config, md pmetric.Metrics) pmetric.Metrics {
	t.Helper()
	sink := new(consumertest.MetricsSink)
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.ConsumeMetrics(context.Background(), md))
	require.Len(t, sink.AllMetrics(), 1)
	return sink.AllMetrics()[0]
}
