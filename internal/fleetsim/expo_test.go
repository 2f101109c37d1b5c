package fleetsim

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/promtext"
	"github.com/servescope/servescope/internal/schema"
)

// mixedFleet runs one replica of every engine through the KV-pressure scenario up to t seconds, so that
// every counter has moved (preemptions included).
func mixedFleet(t *testing.T, until float64) *Fleet {
	t.Helper()
	cfg := testConfig(t, "kv_pressure")
	cfg.Engines = Engines()
	f, err := New(cfg)
	require.NoError(t, err)
	f.Advance(until)
	return f
}

func parse(t *testing.T, what string, body []byte) promtext.Result {
	t.Helper()
	res := promtext.Parse(body)
	require.Zero(t, res.ErrorCount, "%s: %v", what, res.Errors)
	require.NotEmpty(t, res.Families, what)
	return res
}

// schemaFamilies returns the wire names the schema maps for an engine (its sources, in every spelling).
func schemaFamilies(t *testing.T, engine string) (*schema.Engine, map[string]bool) {
	t.Helper()
	s, err := schema.Default()
	require.NoError(t, err)
	e := s.Engines[engine]
	require.NotNil(t, e, engine)
	names := map[string]bool{}
	for _, m := range s.Metrics {
		for _, src := range m.Sources[engine] {
			for _, n := range e.Spellings(src.Name) {
				names[n] = true
			}
		}
	}
	return e, names
}

// familySet names the families of an exposition; a prometheus_client `_created` family counts as part of
// the counter or histogram it belongs to.
func familySet(res promtext.Result) map[string]promtext.MetricType {
	out := map[string]promtext.MetricType{}
	for _, f := range res.Families {
		out[f.Name] = f.Type
	}
	for name := range out {
		base, ok := strings.CutSuffix(name, "_created")
		if !ok {
			continue
		}
		if _, counter := out[base+"_total"]; counter {
			delete(out, name)
		} else if _, hist := out[base]; hist {
			delete(out, name)
		}
	}
	return out
}

// TestExpositionsMatchSchemaAndCaptures checks every engine's exposition against the canonical schema (so
// the simulator cannot drift from it: a family the schema neither maps nor declares as passthrough fails)
// and against a real capture of the engine (so it emits what the engine does, except what is listed here
// with the reason the model cannot give it meaning).
func TestExpositionsMatchSchemaAndCaptures(t *testing.T) {
	f := mixedFleet(t, 40)
	for _, tc := range []struct {
		engine, schemaEngine string
		replica              int
		dcgm                 bool
		capture              string // under the fixtures directory, or a repo path for trtllm-serve
		ignorePrefixes       []string
		notModelled          map[string]string
		typeDiffers          map[string]string
	}{
		{
			engine: EngineVLLM, schemaEngine: schema.EngineVLLM, replica: 0,
			capture:        "vllm/stormlog_vllm_v1_q05_c08_metrics_post.txt",
			ignorePrefixes: []string{"python_", "process_", "http_"}, // the API server's runtime, not the engine
		},
		{
			engine: EngineSGLang, schemaEngine: schema.EngineSglang, replica: 1,
			capture: "sglang/datadog_sglang_metrics.txt",
			notModelled: map[string]string{
				"sglang:spec_accept_length":       "no speculative decoding in the model",
				"sglang:spec_accept_rate":         "no speculative decoding in the model",
				"sglang:engine_startup_time":      "the simulated engine does not start up",
				"sglang:engine_load_weights_time": "the simulated engine loads no weights",
			},
		},
		{
			// No capture of a running trtllm-serve exists (see PROVENANCE.md); the receiver's recorded
			// family list, written from TensorRT-LLM's collector, stands in.
			engine: EngineTRTLLM, schemaEngine: schema.EngineTensorrtLLM, replica: 2,
			capture: "repo:receiver/tensorrtllmreceiver/testdata/prometheus_metrics_2026.txt",
		},
		{
			engine: EngineLlamaCpp, schemaEngine: schema.EngineLlamaCpp, replica: 3,
			capture: "llamacpp/ik_llama_cpp_pr695_comment_metrics_example.txt",
		},
		{
			engine: "dcgm", schemaEngine: schema.EngineDcgmExporter, replica: 0, dcgm: true,
			capture: "dcgm/datadog_dcgm_metrics.txt",
			notModelled: map[string]string{
				"DCGM_FI_DEV_ENC_UTIL":               "no video encoding",
				"DCGM_FI_DEV_DEC_UTIL":               "no video decoding",
				"DCGM_FI_DEV_VGPU_LICENSE_STATUS":    "no vGPU",
				"DCGM_FI_DEV_FAN_SPEED":              "SXM boards have no fan",
				"DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "its unit differs between exporter versions; the model has no NVLink counter",
				"DCGM_FI_DEV_COUNT":                  "one series per GPU already counts them",
				"DCGM_FI_DEV_SLOWDOWN_TEMP":          "a threshold, not a reading",
				"DCGM_FI_DEV_PSTATE":                 "performance states are not modelled",
				"DCGM_FI_DEV_FB_USED_PERCENT":        "derived from used and total, both emitted",
				"DCGM_FI_PROF_PIPE_FP64_ACTIVE":      "per-precision pipes are not modelled; tensor activity is",
				"DCGM_FI_PROF_PIPE_FP32_ACTIVE":      "per-precision pipes are not modelled",
				"DCGM_FI_PROF_PIPE_FP16_ACTIVE":      "per-precision pipes are not modelled",
			},
			// dcgm-exporter's default-counters.csv declares the PCIe rates gauges; the older capture says counter.
			typeDiffers: map[string]string{"DCGM_FI_PROF_PCIE_TX_BYTES": "gauge in current exporters", "DCGM_FI_PROF_PCIE_RX_BYTES": "gauge in current exporters"},
		},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			require.True(t, tc.dcgm || tc.engine == f.replicas[tc.replica].engine)
			body := f.RenderMetrics(tc.replica)
			if tc.dcgm {
				body = f.RenderDCGM(tc.replica)
			}
			emitted := familySet(parse(t, tc.engine, body))

			eng, mapped := schemaFamilies(t, tc.schemaEngine)
			for name := range emitted {
				if !mapped[name] && eng.PassthroughReason(name) == "" {
					t.Errorf("%s is neither a source nor a passthrough of %s in schema/canonical.yaml", name, tc.schemaEngine)
				}
			}

			var captured []byte
			if rel, ok := strings.CutPrefix(tc.capture, "repo:"); ok {
				captured = readRepoFile(t, rel)
			} else {
				captured = fixtures.Read(t, tc.capture)
			}
			want := familySet(promtext.Parse(captured))
			var missing []string
			for name, typ := range want {
				if hasAnyPrefix(name, tc.ignorePrefixes) {
					continue
				}
				if _, skip := tc.notModelled[name]; skip {
					assert.NotContains(t, emitted, name, "listed as not modelled but emitted")
					continue
				}
				got, ok := emitted[name]
				if !ok {
					missing = append(missing, name)
					continue
				}
				if _, ok := tc.typeDiffers[name]; !ok && typ != promtext.TypeUnknown {
					assert.Equal(t, typ, got, "type of %s", name)
				}
			}
			sort.Strings(missing)
			assert.Empty(t, missing, "families of the capture the simulator does not emit")
			for name := range tc.notModelled {
				assert.Contains(t, want, name, "the not-modelled list names a family the capture does not have")
			}
		})
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", rel))
	require.NoError(t, err)
	return b
}

// seriesKey identifies a sample by name and labels.
func seriesKey(s promtext.Sample) string {
	parts := make([]string, 0, len(s.Labels))
	for _, l := range s.Labels {
		parts = append(parts, l.Name+"="+l.Value)
	}
	sort.Strings(parts)
	return s.Name + "{" + strings.Join(parts, ",") + "}"
}

// TestCountersMonotonicHistogramsCumulative scrapes every engine and GPU endpoint as the run goes on:
// counters never go down, and each histogram's buckets are cumulative, end in +Inf equal to _count, and
// are written in increasing order of le.
func TestCountersMonotonicHistogramsCumulative(t *testing.T) {
	cfg := testConfig(t, "kv_pressure")
	cfg.Engines = Engines()
	f, err := New(cfg)
	require.NoError(t, err)
	last := map[string]float64{}
	for step := 1; step <= 12; step++ {
		f.Advance(float64(step) * 7)
		for i := range f.replicas {
			for _, body := range [][]byte{f.RenderMetrics(i), f.RenderDCGM(i)} {
				res := parse(t, f.replicas[i].name, body)
				for _, fam := range res.Families {
					switch fam.Type {
					case promtext.TypeCounter:
						for _, s := range fam.Samples {
							k := seriesKey(s)
							assert.GreaterOrEqual(t, s.Value, last[k], "counter %s went down", k)
							last[k] = s.Value
						}
					case promtext.TypeHistogram:
						checkHistogram(t, fam, last)
					}
				}
			}
		}
	}
	// The run did something: preemptions and tokens were counted somewhere.
	var preempted, tokens float64
	for k, v := range last {
		if strings.HasPrefix(k, "vllm:num_preemptions_total") {
			preempted += v
		}
		if strings.HasPrefix(k, "sglang:generation_tokens_total") {
			tokens += v
		}
	}
	assert.Positive(t, tokens)
	assert.Positive(t, preempted)
	st := f.State()
	require.Equal(t, EngineLlamaCpp, st[3].Engine)
	assert.Zero(t, st[3].Preemptions, "llama.cpp's slots never need preempting")
}

func checkHistogram(t *testing.T, fam *promtext.Family, last map[string]float64) {
	t.Helper()
	var prevLE, prevCount float64 = -1, 0
	var inf, count float64 = -1, -1
	for _, s := range fam.Samples {
		switch {
		case strings.HasSuffix(s.Name, "_bucket"):
			le := ""
			for _, l := range s.Labels {
				if l.Name == "le" {
					le = l.Value
				}
			}
			v, err := strconv.ParseFloat(le, 64)
			require.NoError(t, err, "le %q of %s", le, fam.Name)
			assert.Greater(t, v, prevLE, "%s: buckets out of order", fam.Name)
			assert.GreaterOrEqual(t, s.Value, prevCount, "%s: bucket le=%s is not cumulative", fam.Name, le)
			prevLE, prevCount = v, s.Value
			if le == "+Inf" {
				inf = s.Value
			}
		case strings.HasSuffix(s.Name, "_count"):
			count = s.Value
			k := seriesKey(s)
			assert.GreaterOrEqual(t, s.Value, last[k], "%s went down", k)
			last[k] = s.Value
		}
	}
	assert.Equal(t, count, inf, "%s: +Inf bucket differs from _count", fam.Name)
}

func TestPythonFloatFormatting(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0.0", 1: "1.0", 71680: "71680.0", 0.25: "0.25", 1e-05: "1e-05", -3: "-3.0",
		1790960611.8842795: "1.7909606118842795e+09", 1234567: "1.234567e+06", 10000000: "1e+07", 999999: "999999.0",
		1e16: "1e+16",
	} {
		assert.Equal(t, want, pythonFloat(v), "%v", v)
	}
	assert.Equal(t, "+Inf", formatValue(posInf(), stylePython))
	assert.Equal(t, "6886", formatValue(6886, styleCpp))
	assert.Equal(t, "0.978764", formatValue(0.978764, styleCpp))
	assert.Equal(t, "8.969000", formatValue(8.969, styleDCGMDouble))
	assert.Equal(t, "300", formatValue(300, styleDCGM))
}

func posInf() float64 { v := 0.0; return 1 / v }

// A vLLM replica under KV pressure writes its evictions into vLLM's residency histograms, with vLLM's bucket
// layout: every block whose cached content was dropped was allocated before, so it was tracked and reported.
func TestVLLMKVResidencyHistograms(t *testing.T) {
	f := mixedFleet(t, 40)
	rp := f.replicas[0]
	require.Equal(t, EngineVLLM, rp.engine)
	require.Positive(t, rp.kv.evictions, "the scenario evicts cached blocks")
	res := parse(t, "vllm", f.RenderMetrics(0))
	byName := map[string]*promtext.Family{}
	for _, fam := range res.Families {
		byName[fam.Name] = fam
	}
	for _, name := range []string{"vllm:kv_block_lifetime_seconds", "vllm:kv_block_idle_before_evict_seconds", "vllm:kv_block_reuse_gap_seconds"} {
		fam := byName[name]
		require.NotNil(t, fam, name)
		assert.Equal(t, promtext.TypeHistogram, fam.Type, name)
		var les []string
		count, sum := -1.0, -1.0
		for _, s := range fam.Samples {
			labels := map[string]string{}
			for _, l := range s.Labels {
				labels[l.Name] = l.Value
			}
			assert.Equal(t, "0", labels["engine"], name)
			assert.Equal(t, f.cfg.Model.Name, labels["model_name"], name)
			switch {
			case strings.HasSuffix(s.Name, "_bucket"):
				les = append(les, labels["le"])
			case strings.HasSuffix(s.Name, "_count"):
				count = s.Value
			case strings.HasSuffix(s.Name, "_sum"):
				sum = s.Value
			}
		}
		assert.Equal(t, []string{
			"0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "10.0",
			"20.0", "30.0", "60.0", "120.0", "300.0", "600.0", "1200.0", "1800.0", "+Inf",
		}, les, "%s: vLLM's kv_cache_residency_buckets", name)
		if name == "vllm:kv_block_reuse_gap_seconds" {
			assert.Positive(t, count, "blocks hit twice or more report the gaps between hits")
			continue
		}
		assert.GreaterOrEqual(t, count, float64(rp.kv.evictions), "%s: one observation per evicted block", name)
		assert.Positive(t, sum, name)
	}
	checkHistogram(t, byName["vllm:kv_block_idle_before_evict_seconds"], map[string]float64{})
}
