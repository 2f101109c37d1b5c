package llmnormalizeprocessor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

func tritonMetrics(body []byte) pmetric.Metrics {
	md := enginescrape.ExpositionToMetrics(body, time.Now())
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineTriton)
	return md
}

// pointsOf returns a gauge's or sum's points keyed by their attributes, as "k=v;" in sorted key order.
func pointsOf(m pmetric.Metric) map[string]float64 {
	var dps pmetric.NumberDataPointSlice
	switch m.Type() {
	case pmetric.MetricTypeSum:
		dps = m.Sum().DataPoints()
	case pmetric.MetricTypeGauge:
		dps = m.Gauge().DataPoints()
	default:
		return nil
	}
	out := map[string]float64{}
	for _, dp := range dps.All() {
		out[seriesKey(dp.Attributes())] = numberValue(dp)
	}
	return out
}

func tritonSeries(model, version string) string {
	m := pmetric.NewNumberDataPoint()
	m.Attributes().PutStr(schema.AttrGenAIRequestModel, model)
	m.Attributes().PutStr(schema.AttrLLMModelVersion, version)
	return seriesKey(m.Attributes())
}

// The TensorRT-LLM backend's families carry one quantity per label value; each value the schema selects
// becomes its canonical metric, with the capture's value (unit-converted), the model and version renamed,
// and the category label gone. What the schema selects is read from the schema, the values from the capture.
func TestTritonBackendFamiliesSplitByLabel(t *testing.T) {
	s := mustSchema(t)
	for _, rel := range fixtures.Glob(t, "triton_trtllm/tensorrtllm_backend_README_triton_metrics_example_*.txt") {
		t.Run(rel, func(t *testing.T) {
			body := fixtures.Read(t, rel)
			out := normalize(t, &Config{}, tritonMetrics(body)).out
			got := metrics(out)
			checked := 0
			for _, m := range s.Metrics {
				for _, src := range m.Sources[schema.EngineTriton] {
					if len(src.Select) == 0 {
						continue
					}
					scale, err := src.Scale(m.Unit)
					require.NoError(t, err)
					for _, sample := range fixtures.Samples(body, src.Name) {
						if !selects(sample.Labels, src.Select) {
							continue
						}
						canonical := single(t, out, m.Name)
						want := tritonSeries(labelValue(sample.Labels, "model"), labelValue(sample.Labels, "version"))
						assert.InDelta(t, sample.Value*scale, pointsOf(canonical)[want], 1e-12, "%s from %s", m.Name, src.Display())
						checked++
					}
				}
			}
			require.NotZero(t, checked, "the capture has selected series")
			for _, name := range []string{"nv_trt_llm_request_metrics", "nv_trt_llm_kv_cache_block_metrics", "nv_trt_llm_disaggregated_serving_metrics"} {
				assert.Empty(t, got[name], "every series of %s is selected, so the vendor family is gone", name)
			}
		})
	}
}

func selects(labels string, sel map[string]string) bool {
	for k, v := range sel {
		if labelValue(labels, k) != v {
			return false
		}
	}
	return true
}

// The same capture, read by hand: the gauges routers balance on (queue, KV use) and the block pool.
func TestTritonInflightBatcherCapture(t *testing.T) {
	body := fixtures.Read(t, "triton_trtllm/tensorrtllm_backend_README_triton_metrics_example_ifb.txt")
	out := normalize(t, &Config{}, tritonMetrics(body)).out
	got := metrics(out)
	sample := func(family, label, value string) float64 {
		for _, s := range fixtures.Samples(body, family) {
			if labelValue(s.Labels, label) == value {
				return s.Value
			}
		}
		t.Fatalf("%s{%s=%q} not in the capture", family, label, value)
		return 0
	}
	series := tritonSeries("tensorrt_llm", "1")
	for canonical, want := range map[string]float64{
		schema.MetricLLMSchedulerRequestsWaiting:         sample("nv_trt_llm_request_metrics", "request_type", "waiting"),
		schema.MetricLLMSchedulerRequestsRunning:         sample("nv_trt_llm_request_metrics", "request_type", "active"),
		schema.MetricLLMSchedulerRequestsMaxRunning:      sample("nv_trt_llm_request_metrics", "request_type", "max"),
		schema.MetricLLMSchedulerBatchRequests:           sample("nv_trt_llm_request_metrics", "request_type", "scheduled"),
		schema.MetricLLMSchedulerBatchContextRequests:    sample("nv_trt_llm_request_metrics", "request_type", "context"),
		schema.MetricLLMSchedulerBatchGenerationRequests: sample("nv_trt_llm_inflight_batcher_metrics", "inflight_batcher_specific_metric", "generation_requests"),
		schema.MetricLLMSchedulerBatchContextTokens:      sample("nv_trt_llm_inflight_batcher_metrics", "inflight_batcher_specific_metric", "total_context_tokens"),
		schema.MetricLLMKVCacheUtilization:               sample("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "fraction"),
		schema.MetricLLMKVCacheBlocksUsed:                sample("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "used"),
		schema.MetricLLMKVCacheBlocksFree:                sample("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "free"),
		schema.MetricLLMKVCacheBlocksTotal:               sample("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "max"),
		schema.MetricLLMKVCacheBlockSize:                 sample("nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "tokens_per"),
		schema.MetricLLMEngineIterations:                 sample("nv_trt_llm_general_metrics", "general_type", "iteration_counter"),
		schema.MetricLLMKVTransferRequests:               sample("nv_trt_llm_disaggregated_serving_metrics", "disaggregated_serving_type", "request_count"),
	} {
		m := single(t, out, canonical)
		assert.Equal(t, map[string]float64{series: want}, pointsOf(m), canonical)
		assert.Equal(t, mustSchema(t).Metric(canonical).Unit, m.Unit(), canonical)
	}
	iterations := single(t, out, schema.MetricLLMEngineIterations)
	require.Equal(t, pmetric.MetricTypeSum, iterations.Type(), "a cumulative value exposed as a gauge becomes a counter")
	assert.True(t, iterations.Sum().IsMonotonic())

	// Series no source selects stay under the vendor name, labels and all.
	memory := got["nv_trt_llm_runtime_memory_metrics"]
	require.Len(t, memory, 1)
	assert.Equal(t, len(fixtures.Samples(body, "nv_trt_llm_runtime_memory_metrics")), memory[0].Gauge().DataPoints().Len())
	batcher := got["nv_trt_llm_inflight_batcher_metrics"]
	require.Len(t, batcher, 1)
	require.Equal(t, 1, batcher[0].Gauge().DataPoints().Len(), "only micro_batch_id is left")
	left := batcher[0].Gauge().DataPoints().At(0).Attributes().AsRaw()
	assert.Equal(t, "micro_batch_id", left["inflight_batcher_specific_metric"])
	assert.Equal(t, "tensorrt_llm", left["model"], "an unmapped series is not rewritten")
	general := got["nv_trt_llm_general_metrics"]
	require.Len(t, general, 1)
	assert.Equal(t, sample("nv_trt_llm_general_metrics", "general_type", "timestamp"), general[0].Gauge().DataPoints().At(0).DoubleValue())
}

// Triton's base metrics and the backend's, as one scrape of a Triton server running the TensorRT-LLM
// backend shows them: for the tensorrt_llm model the executor's queue wins over Triton's own pending count.
func TestTritonExecutorQueueWinsOverTritonQueue(t *testing.T) {
	base := fixtures.Read(t, "triton_trtllm/tensorrtllm_backend_README_triton_base_metrics_example.txt")
	ifb := fixtures.Read(t, "triton_trtllm/tensorrtllm_backend_README_triton_metrics_example_ifb.txt")
	pending := fixtures.Samples(base, "nv_inference_pending_request_count")
	require.Len(t, pending, 1)
	var executor float64
	for _, s := range fixtures.Samples(ifb, "nv_trt_llm_request_metrics") {
		if labelValue(s.Labels, "request_type") == "waiting" {
			executor = s.Value
		}
	}
	require.NotEqual(t, pending[0].Value, executor, "the capture tells the two apart")

	body := append(append(append([]byte{}, base...), '\n'), ifb...)
	r := normalize(t, &Config{}, tritonMetrics(body))
	waiting := single(t, r.out, schema.MetricLLMSchedulerRequestsWaiting)
	assert.Equal(t, map[string]float64{tritonSeries("tensorrt_llm", "1"): executor}, pointsOf(waiting))
	assert.Empty(t, metrics(r.out)["nv_inference_pending_request_count"])
}

func TestSplitFamilyOptions(t *testing.T) {
	body := fixtures.Read(t, "triton_trtllm/tensorrtllm_backend_README_triton_metrics_example_ifb.txt")
	requests := len(fixtures.Samples(body, "nv_trt_llm_request_metrics"))
	t.Run("keep_originals keeps the whole family", func(t *testing.T) {
		got := metrics(normalize(t, &Config{KeepOriginals: true}, tritonMetrics(body)).out)
		require.Len(t, got["nv_trt_llm_request_metrics"], 1)
		orig := got["nv_trt_llm_request_metrics"][0].Gauge().DataPoints()
		assert.Equal(t, requests, orig.Len())
		for _, dp := range orig.All() {
			_, ok := dp.Attributes().Get("request_type")
			assert.True(t, ok, "the original is untouched")
		}
		assert.Len(t, got[schema.MetricLLMSchedulerRequestsWaiting], 1)
	})
	t.Run("drop_unmapped drops the unselected series", func(t *testing.T) {
		got := metrics(normalize(t, &Config{DropUnmapped: true}, tritonMetrics(body)).out)
		assert.Empty(t, got["nv_trt_llm_runtime_memory_metrics"])
		assert.Empty(t, got["nv_trt_llm_inflight_batcher_metrics"])
		assert.Len(t, got[schema.MetricLLMSchedulerBatchGenerationRequests], 1)
	})
}

// The backend's first releases wrote the families as *_statistics, without the waiting value; their
// values map the same way. Counters of the disaggregated family arrive in milliseconds.
func TestTritonEarlySpellingsAndUnits(t *testing.T) {
	body := []byte(`# TYPE nv_trt_llm_request_statistics gauge
nv_trt_llm_request_statistics{model="tensorrt_llm",request_type="active",version="2"} 7
nv_trt_llm_request_statistics{model="tensorrt_llm",request_type="max",version="2"} 64
# TYPE nv_trt_llm_kv_cache_block_statistics gauge
nv_trt_llm_kv_cache_block_statistics{kv_cache_block_type="used",model="tensorrt_llm",version="2"} 120
# TYPE nv_trt_llm_disaggregated_serving_metrics counter
nv_trt_llm_disaggregated_serving_metrics{disaggregated_serving_type="kv_cache_transfer_ms",model="tensorrt_llm",version="2"} 1500
`)
	out := normalize(t, &Config{}, tritonMetrics(body)).out
	series := tritonSeries("tensorrt_llm", "2")
	value := func(family, label, v string) float64 {
		for _, s := range fixtures.Samples(body, family) {
			if labelValue(s.Labels, label) == v {
				return s.Value
			}
		}
		return -1
	}
	assert.Equal(t, map[string]float64{series: value("nv_trt_llm_request_statistics", "request_type", "active")},
		pointsOf(single(t, out, schema.MetricLLMSchedulerRequestsRunning)))
	assert.Equal(t, map[string]float64{series: value("nv_trt_llm_request_statistics", "request_type", "max")},
		pointsOf(single(t, out, schema.MetricLLMSchedulerRequestsMaxRunning)))
	assert.Equal(t, map[string]float64{series: value("nv_trt_llm_kv_cache_block_statistics", "kv_cache_block_type", "used")},
		pointsOf(single(t, out, schema.MetricLLMKVCacheBlocksUsed)))
	transfer := single(t, out, schema.MetricLLMKVTransferTotalTime)
	assert.Equal(t, "s", transfer.Unit())
	assert.InDelta(t, value("nv_trt_llm_disaggregated_serving_metrics", "disaggregated_serving_type", "kv_cache_transfer_ms")/1000,
		pointsOf(transfer)[series], 1e-12)
}

// A selected value whose data type cannot carry the canonical instrument stays where it was, reported once.
func TestSplitFamilyOfTheWrongType(t *testing.T) {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("nv_trt_llm_request_metrics")
	h := m.SetEmptyHistogram()
	for _, v := range []string{"waiting", "active"} {
		h.DataPoints().AppendEmpty().Attributes().PutStr("request_type", v)
	}
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineTriton)
	r := normalize(t, &Config{}, md)
	got := metrics(r.out)
	require.Len(t, got["nv_trt_llm_request_metrics"], 1)
	assert.Equal(t, 2, got["nv_trt_llm_request_metrics"][0].Histogram().DataPoints().Len(), "both series stay")
	assert.Empty(t, got[schema.MetricLLMSchedulerRequestsWaiting])
	assert.Equal(t, 1, r.logs.FilterMessageSnippet("leaving it unmapped").Len())
}
