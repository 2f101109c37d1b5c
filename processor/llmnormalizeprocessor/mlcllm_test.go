package llmnormalizeprocessor

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/mlcmetrics"
	"github.com/servescope/servescope/internal/schema"
)

// mlcPage is MLC LLM's /metrics page, written from its source (receiver/mlcllmreceiver/testdata/README.md).
const mlcPage = "metrics_v0.20.0.txt"

// mlcValue reads key's value from the page's text as MLC LLM writes it, `key<TAB>value`.
func mlcValue(t *testing.T, body []byte, key string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok && k == key {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	require.Failf(t, "key not on the page", "%s", key)
	return 0
}

// mlcMetrics is the page as the mlc_llm receiver converts it, with or without its engine name.
func mlcMetrics(t *testing.T, engine string) ([]byte, pmetric.Metrics) {
	body := receiverPage(t, "mlcllmreceiver", mlcPage)
	md := enginescrape.PageToMetrics(mlcmetrics.Parse, body, time.Now())
	if engine != "" {
		md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMEngineName, engine)
	}
	return body, md
}

// Under llm.engine.name mlc_llm, the engine's totals, throughputs and the last request's latencies come
// out under canonical names with the page's values (MLC LLM's seconds are the schema's), and every key
// left under its own name is a documented pass-through.
func TestNormalizesMLCLLM(t *testing.T) {
	s := mustSchema(t)
	body, md := mlcMetrics(t, schema.EngineMlcLLM)
	out := normalize(t, &Config{}, md).out
	for key, canonical := range map[string]string{
		"prefill_tokens_per_s": schema.MetricLLMThroughputPrompt, "decode_tokens_per_s": schema.MetricLLMThroughputGeneration,
		"last_finished_request_ttft_s":                schema.MetricLLMRequestLastTimeToFirstToken,
		"last_finished_request_inter_token_latency_s": schema.MetricLLMRequestLastInterTokenLatency,
		"last_finished_request_end_to_end_latency_s":  schema.MetricLLMRequestLastDuration,
	} {
		m := single(t, out, canonical)
		require.Equal(t, pmetric.MetricTypeGauge, m.Type(), canonical)
		require.Equal(t, 1, m.Gauge().DataPoints().Len(), canonical)
		assert.Equal(t, mlcValue(t, body, key), m.Gauge().DataPoints().At(0).DoubleValue(), "%s from %s", canonical, key)
	}
	for key, canonical := range map[string]string{
		"engine_prefill_time_sum": schema.MetricLLMEnginePrefillDuration, "engine_decode_time_sum": schema.MetricLLMEngineDecodeDuration,
		"prompt_tokens_sum": schema.MetricLLMTokensPrompt, "completion_tokens_sum": schema.MetricLLMTokensGeneration,
		"prefill_tokens_sum": schema.MetricLLMTokensPromptComputed,
	} {
		m := single(t, out, canonical)
		require.Equal(t, pmetric.MetricTypeSum, m.Type(), canonical)
		assert.True(t, m.Sum().IsMonotonic(), canonical)
		assert.Equal(t, mlcValue(t, body, key), sumOf(m), "%s from %s", canonical, key)
	}
	for _, name := range []string{schema.MetricLLMEnginePrefillDuration, schema.MetricLLMRequestLastTimeToFirstToken, schema.MetricLLMRequestLastDuration} {
		assert.Equal(t, "s", single(t, out, name).Unit(), name)
	}
	for name := range metrics(out) {
		if !strings.Contains(name, ".") {
			assert.NotEmpty(t, passthroughReason(s, schema.EngineMlcLLM, name), "%s is neither mapped nor a documented pass-through", name)
		}
	}
}

// MLC LLM's keys carry no prefix, so without the receiver's engine name nothing is guessed from them.
func TestMLCLLMKeysMapOnlyUnderTheReceiversEngineName(t *testing.T) {
	_, md := mlcMetrics(t, "")
	unnamed := metrics(normalize(t, &Config{}, md).out)
	assert.Contains(t, unnamed, "prompt_tokens_sum")
	assert.NotContains(t, unnamed, schema.MetricLLMTokensPrompt)
}
