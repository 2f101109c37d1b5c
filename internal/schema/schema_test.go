package schema

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", rel))
	require.NoError(t, err)
	return string(b)
}

// The generated files must match what the schema renders today; `make generate` refreshes them.
func TestGeneratedFilesAreFresh(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	goSrc, err := RenderGo(s)
	require.NoError(t, err)
	assert.Equal(t, string(goSrc), repoFile(t, GeneratedGoPath), "names.go is stale: run `make generate`")
	builders, err := RenderBuildersGo(s)
	require.NoError(t, err)
	assert.Equal(t, string(builders), repoFile(t, GeneratedBuildersPath), "internal/canonical/metrics.go is stale: run `make generate`")
	assert.Equal(t, string(RenderMarkdown(s)), repoFile(t, GeneratedDocPath), "docs/schema.md is stale: run `make generate`")
}

// The names fixed by the spine issue must be in the schema with these vLLM sources, and in docs/schema.md.
func TestSpineNamesAndVLLMSources(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	doc := repoFile(t, GeneratedDocPath)
	want := []struct{ canonical, instrument, unit, source string }{
		{"gen_ai.server.request.duration", "histogram", "s", "vllm:e2e_request_latency_seconds"},
		{"gen_ai.server.time_to_first_token", "histogram", "s", "vllm:time_to_first_token_seconds"},
		{"gen_ai.server.time_per_output_token", "histogram", "s", "vllm:request_time_per_output_token_seconds"},
		{"gen_ai.server.time_per_output_token", "histogram", "s", "vllm:time_per_output_token_seconds"},
		{"llm.request.inter_token_latency", "histogram", "s", "vllm:inter_token_latency_seconds"},
		{"llm.request.queue_time", "histogram", "s", "vllm:request_queue_time_seconds"},
		{"llm.request.prefill_time", "histogram", "s", "vllm:request_prefill_time_seconds"},
		{"llm.request.decode_time", "histogram", "s", "vllm:request_decode_time_seconds"},
		{"llm.request.inference_time", "histogram", "s", "vllm:request_inference_time_seconds"},
		{"llm.request.prompt_tokens", "histogram", "{token}", "vllm:request_prompt_tokens"},
		{"llm.request.generation_tokens", "histogram", "{token}", "vllm:request_generation_tokens"},
		{"llm.requests.finished", "counter", "{request}", "vllm:request_success_total"},
		{"llm.tokens.prompt", "counter", "{token}", "vllm:prompt_tokens_total"},
		{"llm.tokens.generation", "counter", "{token}", "vllm:generation_tokens_total"},
		{"llm.tokens.prompt_cached", "counter", "{token}", "vllm:prompt_tokens_cached_total"},
		{"llm.scheduler.requests.waiting", "gauge", "{request}", "vllm:num_requests_waiting"},
		{"llm.scheduler.requests.running", "gauge", "{request}", "vllm:num_requests_running"},
		{"llm.scheduler.preemptions", "counter", "{preemption}", "vllm:num_preemptions_total"},
		{"llm.scheduler.batch.tokens", "histogram", "{token}", "vllm:iteration_tokens_total"},
		{"llm.kv_cache.utilization", "gauge", "1", "vllm:kv_cache_usage_perc"},
		{"llm.kv_cache.utilization", "gauge", "1", "vllm:gpu_cache_usage_perc"},
		{"llm.prefix_cache.queries", "counter", "{token}", "vllm:prefix_cache_queries_total"},
		{"llm.prefix_cache.hits", "counter", "{token}", "vllm:prefix_cache_hits_total"},
		{"llm.prefix_cache.queries", "counter", "{token}", "vllm:gpu_prefix_cache_queries_total"},
		{"llm.prefix_cache.hits", "counter", "{token}", "vllm:gpu_prefix_cache_hits_total"},
	}
	for _, w := range want {
		m := s.Metric(w.canonical)
		require.NotNil(t, m, w.canonical)
		assert.Equal(t, Instrument(w.instrument), m.Instrument, w.canonical)
		assert.Equal(t, w.unit, m.Unit, w.canonical)
		var found bool
		for _, src := range m.Sources[EngineVLLM] {
			found = found || src.Name == w.source
		}
		assert.True(t, found, "%s should map from %s", w.canonical, w.source)
		assert.Contains(t, doc, "| `"+w.canonical+"` | `"+w.source+"` |", "docs/schema.md row")
	}
	up := s.Metric(MetricLLMEngineUp)
	require.NotNil(t, up)
	assert.Contains(t, doc, "`llm.engine.up`")
	assert.Contains(t, s.Metric(MetricLLMRequestsFinished).Attributes, AttrLLMFinishReason)
}

func TestParseRejectsBrokenSchemas(t *testing.T) {
	base := `
version: 1
attributes:
  - {name: gen_ai.request.model, level: datapoint, description: d}
engines:
  vllm: {description: d, metric_prefixes: ["vllm:"]}
metrics:
`
	cases := map[string]struct{ metrics, wantErr string }{
		"unknown key":          {`  - {name: llm.a.b, instrument: gauge, unit: "1", description: d, sorces: {}}`, "field sorces not found"},
		"bad instrument":       {`  - {name: llm.a.b, instrument: meter, unit: "1", description: d, produced_by: x}`, `unknown instrument "meter"`},
		"no conversion":        {`  - {name: llm.a.b, instrument: gauge, unit: s, description: d, sources: {vllm: [{name: "vllm:x", unit: MiB, versions: all}]}}`, `no conversion from "MiB" to "s"`},
		"undeclared attribute": {`  - {name: llm.a.b, instrument: gauge, unit: "1", description: d, attributes: [nope], produced_by: x}`, `undeclared attribute "nope"`},
		"unknown engine":       {`  - {name: llm.a.b, instrument: gauge, unit: "1", description: d, sources: {tgi: [{name: "x", versions: all}]}}`, `unknown engine "tgi"`},
		"source mapped twice": {"  - {name: llm.a.b, instrument: gauge, unit: \"1\", description: d, sources: {vllm: [{name: \"vllm:x\", versions: all}]}}\n" +
			`  - {name: llm.a.c, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", versions: all}]}}`, "mapped twice"},
		"missing versions": {`  - {name: llm.a.b, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x"}]}}`, "versions is required"},
		"ratio of a gauge": {"  - {name: llm.a.b, instrument: gauge, unit: \"1\", description: d, produced_by: x}\n" +
			`  - {name: llm.a.c, instrument: gauge, unit: "1", description: d, ratio_of: [llm.a.b, llm.a.b]}`, `ratio_of "llm.a.b" is not a canonical counter`},
		"bad name": {`  - {name: Bad-Name, instrument: gauge, unit: "1", description: d, produced_by: x}`, "not a dotted lower-case name"},
		"whole and selected": {"  - {name: llm.a.b, instrument: gauge, unit: \"1\", description: d, sources: {vllm: [{name: \"vllm:x\", versions: all}]}}\n" +
			`  - {name: llm.a.c, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", select: {kind: a}, versions: all}]}}`, "both whole and with select"},
		"selects on different labels": {"  - {name: llm.a.b, instrument: gauge, unit: \"1\", description: d, sources: {vllm: [{name: \"vllm:x\", select: {kind: a}, versions: all}]}}\n" +
			`  - {name: llm.a.c, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", select: {type: a}, versions: all}]}}`, "selects on different labels"},
		"same selection twice": {"  - {name: llm.a.b, instrument: gauge, unit: \"1\", description: d, sources: {vllm: [{name: \"vllm:x\", select: {kind: a}, versions: all}]}}\n" +
			`  - {name: llm.a.c, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", select: {kind: a}, versions: all}]}}`, "mapped twice"},
		"empty selected value":    {`  - {name: llm.a.b, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", select: {kind: ""}, versions: all}]}}`, "select needs a label and a value"},
		"from_label on a counter": {`  - {name: llm.a.b, instrument: counter, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", from_label: size, versions: all}]}}`, "from_label needs a gauge"},
		"from_label and select":   {`  - {name: llm.a.b, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", from_label: size, select: {kind: a}, versions: all}]}}`, "from_label needs a gauge"},
		"selected and renamed":    {`  - {name: llm.a.b, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", select: {kind: a}, labels: {kind: gen_ai.request.model}, versions: all}]}}`, "both selected"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(base + c.metrics + "\n"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.wantErr)
		})
	}
}

func TestParseRejectsBrokenEnums(t *testing.T) {
	attrs := func(enums string) string {
		return "version: 1\nattributes:\n" +
			"  - {name: llm.incident.severity, level: datapoint, description: d, enum: [{value: warning, description: d}]}\n" + enums +
			"engines:\n  vllm: {description: d, metric_prefixes: [\"vllm:\"]}\nmetrics: []\n"
	}
	cases := map[string]struct{ enums, wantErr string }{
		"value twice":       {"  - {name: llm.phase, level: datapoint, description: d, enum: [{value: queue, description: d}, {value: queue, description: e}]}\n", `enum value "queue" declared twice`},
		"no description":    {"  - {name: llm.phase, level: datapoint, description: d, enum: [{value: queue}]}\n", `enum value "queue" has no description`},
		"not an identifier": {"  - {name: llm.phase, level: datapoint, description: d, enum: [{value: Queue-Time, description: d}]}\n", "not a lower-case identifier"},
		"detector without severity": {
			"  - {name: llm.incident.detector, level: datapoint, description: d, enum: [{value: kv_thrash, description: d}]}\n",
			`detector "kv_thrash": severity "" is not a value of llm.incident.severity`,
		},
		"detector with unknown severity": {
			"  - {name: llm.incident.detector, level: datapoint, description: d, enum: [{value: kv_thrash, severity: critical, description: d}]}\n",
			`severity "critical" is not a value`,
		},
		"severity off a detector": {"  - {name: llm.phase, level: datapoint, description: d, enum: [{value: queue, severity: warning, description: d}]}\n", "only detectors have one"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(attrs(c.enums)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.wantErr)
		})
	}
	s, err := Parse([]byte(attrs("  - {name: llm.incident.detector, level: datapoint, description: d, enum: [{value: kv_thrash, severity: warning, description: d}]}\n")))
	require.NoError(t, err)
	assert.Equal(t, []EnumValue{{Value: "kv_thrash", Severity: "warning", Description: "d"}}, s.Enum(AttrLLMIncidentDetector))
}

// The generated lists are the schema's enum values, in its order, and every detector has its severity.
func TestGeneratedEnumsMatchTheSchema(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	values := func(attr string) []string {
		var out []string
		for _, v := range s.Enum(attr) {
			out = append(out, v.Value)
		}
		return out
	}
	assert.Equal(t, values(AttrLLMRootCause), RootCauseValues())
	assert.Equal(t, values(AttrLLMIncidentDetector), IncidentDetectorValues())
	assert.Equal(t, values(AttrLLMIncidentState), IncidentStateValues())
	assert.Equal(t, values(AttrLLMPhase), PhaseValues())
	assert.Equal(t, values(AttrLLMCostCategory), CostCategoryValues())
	for _, v := range s.Enum(AttrLLMIncidentDetector) {
		assert.Equal(t, v.Severity, IncidentDetectorSeverity(v.Value), v.Value)
	}
	assert.Empty(t, IncidentDetectorSeverity("no_such_detector"))
	doc := repoFile(t, GeneratedDocPath)
	assert.Contains(t, doc, "| `kv_thrash` | critical |")
	assert.Contains(t, doc, "| `idle_while_waiting` |")
}

func TestSpellingsCoverRayPrefixes(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	got := s.Engines[EngineVLLM].Spellings("vllm:num_requests_waiting")
	assert.Equal(t, []string{"vllm:num_requests_waiting", "ray_vllm:num_requests_waiting", "ray_vllm_num_requests_waiting"}, got)
}

func TestScaleConversions(t *testing.T) {
	for _, c := range []struct {
		from, to string
		want     float64
	}{{"ms", "s", 1e-3}, {"us", "s", 1e-6}, {"MiB", "By", 1048576}, {"%", "1", 0.01}, {"", "s", 1}, {"s", "s", 1}} {
		got, err := (&Source{Unit: c.from}).Scale(c.to)
		require.NoError(t, err)
		assert.InDelta(t, c.want, got, 1e-15, "%s->%s", c.from, c.to)
	}
	assert.Contains(t, GoIdentifier("gen_ai.server.time_to_first_token"), "GenAI")
}

// One vendor family split by label value feeds several canonical metrics; each selection is its own source.
func TestSelectSplitsOneFamily(t *testing.T) {
	doc := `
version: 1
attributes:
  - {name: gen_ai.request.model, level: datapoint, description: d}
engines:
  vllm: {description: d, metric_prefixes: ["vllm:"]}
metrics:
  - {name: llm.a.waiting, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", select: {kind: waiting}, versions: all}]}}
  - {name: llm.a.running, instrument: gauge, unit: "1", description: d, sources: {vllm: [{name: "vllm:x", select: {kind: running}, versions: all}]}}
`
	s, err := Parse([]byte(doc))
	require.NoError(t, err)
	assert.Equal(t, `vllm:x{kind="waiting"}`, s.Metric("llm.a.waiting").Sources[EngineVLLM][0].Display())
	assert.Equal(t, "vllm:x", (&Source{Name: "vllm:x"}).Display())
	md := string(RenderMarkdown(s))
	assert.Contains(t, md, "| `llm.a.running` | `vllm:x{kind=\"running\"}` |")
}

// The Triton rows the TensorRT-LLM backend issue asked for are in docs/schema.md, and no family of the
// backend is left as a blanket pass-through.
func TestTritonBackendInDocs(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	doc := repoFile(t, GeneratedDocPath)
	for _, row := range []string{
		"| `llm.scheduler.requests.waiting` | `nv_trt_llm_request_metrics{request_type=\"waiting\"}` |",
		"| `llm.kv_cache.utilization` | `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"}` |",
		"| `llm.kv_cache.blocks.used` | `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"used\"}` |",
	} {
		assert.Contains(t, doc, row)
	}
	for _, p := range s.Engines[EngineTriton].Passthrough {
		assert.NotEqual(t, "nv_trt_llm_", p.Match, "the pending select-by-label note is gone")
	}
}

// An engine without a prefix (NVIDIA NIM's bare names) is only recognised by its receiver's llm.engine.name:
// it is accepted with a receiver and rejected without one.
func TestUnprefixedEngineNeedsAReceiver(t *testing.T) {
	doc := func(engine string) string {
		return "version: 1\nattributes: []\nengines:\n  bare: " + engine + "\nmetrics:\n" +
			"  - {name: llm.a.b, instrument: gauge, unit: \"1\", description: d, sources: {bare: [{name: x, versions: all}]}}\n"
	}
	_, err := Parse([]byte(doc(`{description: d, metric_prefixes: []}`)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "engine bare: no metric_prefixes and no receiver")
	s, err := Parse([]byte(doc(`{description: d, receiver: bare, metric_prefixes: []}`)))
	require.NoError(t, err)
	assert.Contains(t, string(RenderMarkdown(s)), "Families carry no prefix")
}
