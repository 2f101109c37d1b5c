package llmnormalizeprocessor

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// vLLM says its block size and block count only in cache_config_info's labels: on the real captures they
// become llm.kv_cache.block_size and llm.kv_cache.blocks.total with the numbers the page's labels carry,
// keyed by the engine index only (the other labels are configuration), and the info metric stays.
func TestCacheConfigLabelsBecomeGauges(t *testing.T) {
	for _, c := range []struct{ capture, family, engine string }{
		{"vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt", "vllm:cache_config_info", schema.EngineVLLM},
		{"vllm/datadog_vllm_metrics.txt", "vllm:cache_config_info", schema.EngineVLLM},
		{"vllm/datadog_ray_vllm_metrics.txt", "ray_vllm:cache_config_info", schema.EngineRayServe},
	} {
		t.Run(c.capture, func(t *testing.T) {
			body := fixtures.Read(t, c.capture)
			info := fixtures.Samples(body, c.family)
			require.Len(t, info, 1)
			md := enginescrape.ExpositionToMetrics(body, time.Now())
			md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, c.engine)
			out := normalize(t, &Config{}, md).out
			for label, canonical := range map[string]string{"block_size": schema.MetricLLMKVCacheBlockSize, "num_gpu_blocks": schema.MetricLLMKVCacheBlocksTotal} {
				want, err := strconv.ParseFloat(labelValue(info[0].Labels, label), 64)
				require.NoError(t, err)
				m := single(t, out, canonical)
				require.Equal(t, 1, m.Gauge().DataPoints().Len(), canonical)
				dp := m.Gauge().DataPoints().At(0)
				assert.Equal(t, want, dp.DoubleValue(), "%s from the %s label", canonical, label)
				for k := range dp.Attributes().AsRaw() {
					assert.Equal(t, schema.AttrLLMEngineIndex, k, "%s keeps only identifying labels", canonical)
				}
			}
			assert.Contains(t, metrics(out), schema.MetricLLMEngineCacheConfig, "the info metric itself still maps")
		})
	}
}

// A label that is not a number (vLLM writes None before it has sized the cache) gives no point and does not
// stop the others; a label that is missing the same.
func TestFromLabelSkipsWhatIsNotANumber(t *testing.T) {
	page := "# TYPE vllm:cache_config_info gauge\n" +
		`vllm:cache_config_info{block_size="16",num_gpu_blocks="None",engine="0"} 1` + "\n" +
		`vllm:cache_config_info{block_size="NaN",num_gpu_blocks="+Inf",engine="1"} 1` + "\n" +
		`vllm:cache_config_info{engine="2"} 1` + "\n"
	md := enginescrape.ExpositionToMetrics([]byte(page), time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineVLLM)
	out := normalize(t, &Config{}, md).out
	size := single(t, out, schema.MetricLLMKVCacheBlockSize)
	require.Equal(t, 1, size.Gauge().DataPoints().Len())
	assert.Equal(t, 16.0, size.Gauge().DataPoints().At(0).DoubleValue())
	assert.NotContains(t, metrics(out), schema.MetricLLMKVCacheBlocksTotal, "no engine gave a number")
	assert.Equal(t, 3, single(t, out, schema.MetricLLMEngineCacheConfig).Gauge().DataPoints().Len())
}
