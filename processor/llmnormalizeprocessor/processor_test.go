package llmnormalizeprocessor

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/processor/llmnormalizeprocessor/internal/metadata"
)

type run struct {
	out  pmetric.Metrics
	logs *observer.ObservedLogs
}

func normalize(t *testing.T, cfg *Config, md pmetric.Metrics) run {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	set := processortest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	sink := new(consumertest.MetricsSink)
	p, err := NewFactory().CreateMetrics(context.Background(), set, cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.ConsumeMetrics(context.Background(), md))
	require.Len(t, sink.AllMetrics(), 1)
	return run{out: sink.AllMetrics()[0], logs: logs}
}

func metrics(md pmetric.Metrics) map[string][]pmetric.Metric {
	out := map[string][]pmetric.Metric{}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				out[ms.At(k).Name()] = append(out[ms.At(k).Name()], ms.At(k))
			}
		}
	}
	return out
}

func single(t *testing.T, md pmetric.Metrics, name string) pmetric.Metric {
	t.Helper()
	got := metrics(md)[name]
	require.Len(t, got, 1, "exactly one %s", name)
	return got[0]
}

// vllmFamily returns the wire name a capture uses for a vLLM family: vllm:x, ray_vllm:x or ray_vllm_x.
func vllmFamily(body []byte, family string) string {
	for _, prefix := range []string{"vllm:", "ray_vllm:", "ray_vllm_"} {
		if strings.Contains(string(body), "\n"+prefix+family) {
			return prefix + family
		}
	}
	return ""
}

func labelValue(labels, name string) string {
	m := regexp.MustCompile(`(?:^|,)` + name + `="([^"]*)"`).FindStringSubmatch(labels)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestNormalizesEveryVLLMCapture(t *testing.T) {
	s, err := schema.Default()
	require.NoError(t, err)
	for _, rel := range fixtures.Glob(t, "vllm/*.txt") {
		for _, withEngineAttr := range []bool{true, false} {
			name := rel
			if !withEngineAttr {
				name += "/detected_from_names"
			}
			t.Run(name, func(t *testing.T) {
				body := fixtures.Read(t, rel)
				md := enginescrape.ExpositionToMetrics(body, time.Now())
				if withEngineAttr {
					md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, schema.EngineVLLM)
				}
				out := normalize(t, &Config{}, md).out
				got := metrics(out)

				// The waiting-requests gauge equals the capture's, per model and engine index.
				wire := vllmFamily(body, "num_requests_waiting")
				require.NotEmpty(t, wire)
				want := fixtures.Samples(body, wire)
				waiting := single(t, out, schema.MetricLLMSchedulerRequestsWaiting)
				assert.Equal(t, "{request}", waiting.Unit())
				require.Equal(t, len(want), waiting.Gauge().DataPoints().Len())
				for i, w := range want {
					dp := waiting.Gauge().DataPoints().At(i)
					assert.Equal(t, w.Value, dp.DoubleValue())
					model, _ := dp.Attributes().Get(schema.AttrGenAIRequestModel)
					assert.Equal(t, labelValue(w.Labels, "model_name"), model.Str())
					_, raw := dp.Attributes().Get("model_name")
					assert.False(t, raw, "model_name is renamed, not copied")
					if idx := labelValue(w.Labels, "engine"); idx != "" {
						got, _ := dp.Attributes().Get(schema.AttrLLMEngineIndex)
						assert.Equal(t, idx, got.Str())
					}
				}

				// A histogram's count and sum survive, in seconds.
				wire = vllmFamily(body, "e2e_request_latency_seconds")
				e2e := single(t, out, schema.MetricGenAIServerRequestDuration)
				assert.Equal(t, "s", e2e.Unit())
				var count uint64
				var sum float64
				for i := 0; i < e2e.Histogram().DataPoints().Len(); i++ {
					count += e2e.Histogram().DataPoints().At(i).Count()
					sum += e2e.Histogram().DataPoints().At(i).Sum()
				}
				assert.Equal(t, uint64(fixtures.Sum(body, wire+"_count")), count)
				assert.InDelta(t, fixtures.Sum(body, wire+"_sum"), sum, 1e-6)

				// Finished requests keep their reason under the canonical attribute.
				wire = vllmFamily(body, "request_success_total")
				finished := single(t, out, schema.MetricLLMRequestsFinished)
				assert.True(t, finished.Sum().IsMonotonic())
				var total float64
				reasons := map[string]bool{}
				for i := 0; i < finished.Sum().DataPoints().Len(); i++ {
					dp := finished.Sum().DataPoints().At(i)
					total += dp.DoubleValue()
					r, ok := dp.Attributes().Get(schema.AttrLLMFinishReason)
					require.True(t, ok)
					reasons[r.Str()] = true
				}
				assert.Equal(t, fixtures.Sum(body, wire), total)
				assert.True(t, reasons["stop"] || reasons["length"], "real reasons: %v", reasons)

				// Whatever still carries an engine prefix is a documented pass-through, never a forgotten family.
				vllm := s.Engines[schema.EngineVLLM]
				for metricName := range got {
					for _, prefix := range []string{"vllm:", "ray_vllm:", "ray_vllm_"} {
						if rest, ok := strings.CutPrefix(metricName, prefix); ok {
							assert.NotEmpty(t, vllm.PassthroughReason("vllm:"+rest), "%s is neither mapped nor a documented pass-through", metricName)
						}
					}
				}
				// And the runtime families pass through unchanged.
				if len(fixtures.Samples(body, "process_open_fds")) > 0 {
					assert.Len(t, got["process_open_fds"], 1)
				}
			})
		}
	}
}

// The hand-extended Datadog capture carries the V0 and the V1 spelling of KV usage side by side: one
// canonical series comes out, from the current spelling.
func TestNewestSpellingWins(t *testing.T) {
	body := fixtures.Read(t, "vllm/datadog_vllm_metrics.txt")
	require.NotEmpty(t, fixtures.Samples(body, "vllm:gpu_cache_usage_perc"))
	want := fixtures.Samples(body, "vllm:kv_cache_usage_perc")
	require.Len(t, want, 1)
	out := normalize(t, &Config{}, enginescrape.ExpositionToMetrics(body, time.Now())).out
	kv := single(t, out, schema.MetricLLMKVCacheUtilization)
	require.Equal(t, 1, kv.Gauge().DataPoints().Len())
	assert.Equal(t, want[0].Value, kv.Gauge().DataPoints().At(0).DoubleValue())
	assert.Empty(t, metrics(out)["vllm:gpu_cache_usage_perc"], "the older spelling does not linger as a vendor metric either")
}

func histogramMetrics(name string, bounds []float64, counts []uint64, sum float64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(name)
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := h.DataPoints().AppendEmpty()
	dp.ExplicitBounds().FromRaw(bounds)
	dp.BucketCounts().FromRaw(counts)
	var c uint64
	for _, n := range counts {
		c += n
	}
	dp.SetCount(c)
	dp.SetSum(sum)
	dp.Attributes().PutStr("model_name", "m")
	return md
}

func TestMillisecondsBecomeSeconds(t *testing.T) {
	md := histogramMetrics("vllm:model_forward_time_milliseconds", []float64{1, 5, 10, 50}, []uint64{1, 2, 3, 4, 0}, 120)
	out := normalize(t, &Config{}, md).out
	m := single(t, out, schema.MetricLLMRequestModelForwardTime)
	assert.Equal(t, "s", m.Unit())
	dp := m.Histogram().DataPoints().At(0)
	assert.InDeltaSlice(t, []float64{0.001, 0.005, 0.010, 0.050}, dp.ExplicitBounds().AsRaw(), 1e-12)
	assert.Equal(t, []uint64{1, 2, 3, 4, 0}, dp.BucketCounts().AsRaw(), "counts do not change with the unit")
	assert.InDelta(t, 0.120, dp.Sum(), 1e-12)
	model, _ := dp.Attributes().Get(schema.AttrGenAIRequestModel)
	assert.Equal(t, "m", model.Str())
}

func gaugeMetrics(names ...string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for i, n := range names {
		m := ms.AppendEmpty()
		m.SetName(n)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetDoubleValue(float64(i + 1))
		dp.Attributes().PutStr("model_name", "m")
	}
	return md
}

func TestOptions(t *testing.T) {
	in := []string{"vllm:num_requests_running", "python_gc_objects_collected_total", "some_other_metric"}
	t.Run("default maps and passes the rest through", func(t *testing.T) {
		got := metrics(normalize(t, &Config{}, gaugeMetrics(in...)).out)
		assert.Len(t, got[schema.MetricLLMSchedulerRequestsRunning], 1)
		assert.Empty(t, got["vllm:num_requests_running"])
		assert.Len(t, got["python_gc_objects_collected_total"], 1)
		assert.Len(t, got["some_other_metric"], 1)
	})
	t.Run("keep_originals", func(t *testing.T) {
		got := metrics(normalize(t, &Config{KeepOriginals: true}, gaugeMetrics(in...)).out)
		require.Len(t, got["vllm:num_requests_running"], 1)
		orig := got["vllm:num_requests_running"][0].Gauge().DataPoints().At(0)
		_, ok := orig.Attributes().Get("model_name")
		assert.True(t, ok, "the original is untouched")
		canon := got[schema.MetricLLMSchedulerRequestsRunning][0].Gauge().DataPoints().At(0)
		assert.Equal(t, orig.DoubleValue(), canon.DoubleValue())
	})
	t.Run("drop_unmapped", func(t *testing.T) {
		got := metrics(normalize(t, &Config{DropUnmapped: true}, gaugeMetrics(in...)).out)
		assert.Len(t, got, 1)
		assert.Len(t, got[schema.MetricLLMSchedulerRequestsRunning], 1)
	})
	t.Run("engine not enabled", func(t *testing.T) {
		rs := buildRules(mustSchema(t), []string{"sglang_not_in_schema_yet"})
		assert.Empty(t, rs.byEngine)
	})
}

func mustSchema(t *testing.T) *schema.Schema {
	s, err := schema.Default()
	require.NoError(t, err)
	return s
}

// What the stock prometheus receiver or an OTLP push delivers: counters without `_total`, a counter typed
// as a gauge (an untyped family), and a histogram where a counter belongs.
func TestOtherShapesOfTheSameFamilies(t *testing.T) {
	md := gaugeMetrics("vllm:prompt_tokens", "ray_vllm_generation_tokens_total")
	m := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
	m.SetName("vllm:num_preemptions_total")
	m.SetEmptyHistogram().DataPoints().AppendEmpty()
	r := normalize(t, &Config{}, md)
	got := metrics(r.out)

	prompt := single(t, r.out, schema.MetricLLMTokensPrompt)
	require.Equal(t, pmetric.MetricTypeSum, prompt.Type(), "a counter is a monotonic sum even when it arrived as a gauge")
	assert.True(t, prompt.Sum().IsMonotonic())
	assert.Equal(t, pmetric.AggregationTemporalityCumulative, prompt.Sum().AggregationTemporality())
	assert.Len(t, got[schema.MetricLLMTokensGeneration], 1, "newer Ray spelling")

	assert.Len(t, got["vllm:num_preemptions_total"], 1, "a histogram cannot be a counter: left as it came")
	assert.Equal(t, 1, r.logs.FilterMessageSnippet("leaving it unmapped").Len())
}

func TestNonStringAttributesAreRenamedToo(t *testing.T) {
	md := gaugeMetrics("vllm:num_requests_running")
	dp := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0)
	dp.Attributes().PutInt("engine", 3)
	out := normalize(t, &Config{}, md).out
	got := single(t, out, schema.MetricLLMSchedulerRequestsRunning).Gauge().DataPoints().At(0).Attributes()
	v, ok := got.Get(schema.AttrLLMEngineIndex)
	require.True(t, ok)
	assert.Equal(t, pcommon.ValueTypeInt, v.Type())
	assert.EqualValues(t, 3, v.Int())
}

// Review cases: per-series precedence, keep_originals with two spellings, no overwrite on rename.
func TestSpellingsInTransitionPerSeries(t *testing.T) {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	add := func(name, model string, v float64) {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetDoubleValue(v)
		dp.Attributes().PutStr("model_name", model)
	}
	add("ray_vllm:gpu_cache_usage_perc", "old-replica", 0.3) // older spelling first in the scrape
	add("ray_vllm:kv_cache_usage_perc", "new-replica", 0.5)
	add("ray_vllm:gpu_cache_usage_perc", "new-replica", 0.9) // same series as the newer spelling: loses

	got := numbersByModel(single(t, normalize(t, &Config{}, md).out, schema.MetricLLMKVCacheUtilization))
	assert.Equal(t, map[string]float64{"old-replica": 0.3, "new-replica": 0.5}, got)

	kept := metrics(normalize(t, &Config{KeepOriginals: true}, func() pmetric.Metrics {
		md := gaugeMetrics("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
		return md
	}()).out)
	assert.Len(t, kept["vllm:gpu_cache_usage_perc"], 1, "keep_originals keeps every original")
	assert.Len(t, kept["vllm:kv_cache_usage_perc"], 1)
	assert.Len(t, kept[schema.MetricLLMKVCacheUtilization], 1)
}

func numbersByModel(m pmetric.Metric) map[string]float64 {
	out := map[string]float64{}
	for _, dp := range m.Gauge().DataPoints().All() {
		v, _ := dp.Attributes().Get(schema.AttrGenAIRequestModel)
		out[v.Str()] = dp.DoubleValue()
	}
	return out
}

func TestRenameDoesNotOverwrite(t *testing.T) {
	md := gaugeMetrics("vllm:num_requests_running")
	dp := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0)
	dp.Attributes().PutStr(schema.AttrGenAIRequestModel, "served-name")
	got := single(t, normalize(t, &Config{}, md).out, schema.MetricLLMSchedulerRequestsRunning).Gauge().DataPoints().At(0).Attributes().AsRaw()
	assert.Equal(t, map[string]any{schema.AttrGenAIRequestModel: "served-name"}, got)
}

func TestHitRatioFromIntegerCounters(t *testing.T) {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for name, v := range map[string]int64{"vllm:prefix_cache_hits_total": 30, "vllm:prefix_cache_queries_total": 120} {
		m := ms.AppendEmpty()
		m.SetName(name)
		m.SetEmptySum().SetIsMonotonic(true)
		m.Sum().DataPoints().AppendEmpty().SetIntValue(v)
	}
	ratio := single(t, normalize(t, &Config{}, md).out, schema.MetricLLMPrefixCacheHitRatio)
	assert.Equal(t, 0.25, ratio.Gauge().DataPoints().At(0).DoubleValue())
}
