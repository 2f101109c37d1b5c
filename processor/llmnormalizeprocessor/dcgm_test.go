package llmnormalizeprocessor

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// numbers returns a gauge's or sum's points keyed by one attribute's value.
func numbers(m pmetric.Metric, key string) map[string]float64 {
	var dps pmetric.NumberDataPointSlice
	if m.Type() == pmetric.MetricTypeSum {
		dps = m.Sum().DataPoints()
	} else {
		dps = m.Gauge().DataPoints()
	}
	out := map[string]float64{}
	for i := 0; i < dps.Len(); i++ {
		name := "" // the capture's profiling fields carry no labels (it is partly hand-written)
		if v, ok := dps.At(i).Attributes().Get(key); ok {
			name = v.AsString()
		}
		out[name] = dps.At(i).DoubleValue()
	}
	return out
}

// A user scraping dcgm-exporter with the stock prometheus receiver gets the nvml receiver's names.
func TestDCGMExporterMapsOntoTheGPUNames(t *testing.T) {
	body := fixtures.Read(t, "dcgm/datadog_dcgm_metrics.txt")
	out := normalize(t, &Config{}, enginescrape.ExpositionToMetrics(body, time.Now())).out
	got := metrics(out)

	uuid := func(labels string) string { return labelValue(labels, "UUID") }
	byGPU := func(wire string, scale float64) map[string]float64 {
		want := map[string]float64{}
		for _, s := range fixtures.Samples(body, wire) {
			want[uuid(s.Labels)] = s.Value * scale
		}
		return want
	}
	// Per series, the profiling field wins over GPU_UTIL; a GPU without it keeps GPU_UTIL. (In this partly
	// hand-written capture the profiling fields carry no labels, so both kinds of series appear.)
	wantUtil := byGPU("DCGM_FI_DEV_GPU_UTIL", 0.01)
	for gpu, v := range byGPU("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1) {
		wantUtil[gpu] = v
	}
	util := single(t, out, schema.MetricHwGPUUtilization)
	assert.Equal(t, wantUtil, numbers(util, schema.AttrHwID))
	assert.Equal(t, byGPU("DCGM_FI_DEV_FB_USED", 1<<20), numbers(single(t, out, schema.MetricHwGPUMemoryUsage), schema.AttrHwID), "MiB to bytes")
	assert.Equal(t, byGPU("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e-3), numbers(single(t, out, schema.MetricHwEnergy), schema.AttrHwID), "mJ to J")

	clocks := single(t, out, schema.MetricNvidiaGPUClockFrequency)
	sm := fixtures.Samples(body, "DCGM_FI_DEV_SM_CLOCK")
	mem := fixtures.Samples(body, "DCGM_FI_DEV_MEM_CLOCK")
	require.Equal(t, len(sm)+len(mem), clocks.Gauge().DataPoints().Len(), "SM and memory clocks are two series of one metric")
	assert.Equal(t, map[string]float64{"sm": sm[0].Value * 1e6, "memory": mem[0].Value * 1e6}, numbers(clocks, schema.AttrNvidiaGPUClockType))
	dp := single(t, out, schema.MetricHwTemperature).Gauge().DataPoints().At(0).Attributes().AsRaw()
	assert.Equal(t, labelValue(sm[0].Labels, "gpu"), dp[schema.AttrNvidiaGPUIndex])
	assert.Equal(t, labelValue(sm[0].Labels, "modelName"), dp[schema.AttrHwName])
	assert.Equal(t, labelValue(sm[0].Labels, "UUID"), dp[schema.AttrHwID])
	assert.Equal(t, "general", util.Gauge().DataPoints().At(0).Attributes().AsRaw()[schema.AttrHwGPUTask])

	s := mustSchema(t)
	for name := range got {
		if strings.HasPrefix(name, "DCGM_") {
			assert.NotEmpty(t, s.Engines["dcgm_exporter"].PassthroughReason(name), "%s is neither mapped nor a documented pass-through", name)
		}
	}
}
