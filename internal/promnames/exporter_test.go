package promnames

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// labelCarrier is the metric that carries every schema attribute, to read their label names off the page.
const labelCarrier = "promnames.test.labels"

// TestNamesMatchTheStockExporter writes every canonical metric through the prometheus exporter of this
// distribution, with its default configuration as the example configurations use it, and compares the
// names on its page with Name and Label: the dashboards and alerts are generated from those.
func TestNamesMatchTheStockExporter(t *testing.T) {
	sch, err := schema.Default()
	require.NoError(t, err)
	page := exposition(t, canonicalMetrics(sch))

	families := map[string]bool{}
	var carrierLine string
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			families[strings.Fields(name)[0]] = true
		}
		if strings.HasPrefix(line, "promnames_test_labels{") {
			carrierLine = line
		}
	}
	require.NoError(t, sc.Err())

	want := map[string]string{} // Prometheus name -> canonical name
	for _, m := range sch.Metrics {
		name := Name(m)
		assert.True(t, families[name], "%s: Name says %q, the exporter's page has no such family", m.Name, name)
		if other, dup := want[name]; dup {
			t.Errorf("%s and %s are both %q in Prometheus", other, m.Name, name)
		}
		want[name] = m.Name
	}
	// Every family on the page is a canonical metric (or the label carrier): nothing was renamed past Name.
	for family := range families {
		if family != "promnames_test_labels" {
			_, known := want[family]
			assert.True(t, known, "the exporter wrote %q, which Name gives no canonical metric", family)
		}
	}

	require.NotEmpty(t, carrierLine, "the exporter's page lacks the label carrier")
	for _, a := range sch.Attributes {
		assert.Contains(t, carrierLine, Label(a.Name)+`="v"`, "%s: Label says %q", a.Name, Label(a.Name))
	}
}

// canonicalMetrics is one data point of every canonical metric, typed as the distribution writes it.
func canonicalMetrics(sch *schema.Schema) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	now := pcommon.NewTimestampFromTime(time.Now())
	for _, cm := range sch.Metrics {
		m := ms.AppendEmpty()
		m.SetName(cm.Name)
		m.SetUnit(cm.Unit)
		switch cm.Instrument {
		case schema.Counter:
			sum := m.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp := sum.DataPoints().AppendEmpty()
			dp.SetTimestamp(now)
			dp.SetDoubleValue(1)
		case schema.Gauge:
			dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
			dp.SetTimestamp(now)
			dp.SetDoubleValue(1)
		case schema.Histogram:
			h := m.SetEmptyHistogram()
			h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp := h.DataPoints().AppendEmpty()
			dp.SetTimestamp(now)
			dp.SetCount(1)
			dp.SetSum(1)
			dp.ExplicitBounds().FromRaw([]float64{1})
			dp.BucketCounts().FromRaw([]uint64{1, 0})
		}
	}
	m := ms.AppendEmpty()
	m.SetName(labelCarrier)
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(now)
	dp.SetDoubleValue(1)
	for _, a := range sch.Attributes {
		dp.Attributes().PutStr(a.Name, "v")
	}
	return md
}

// exposition is the prometheus exporter's page after it was handed md.
func exposition(t *testing.T, md pmetric.Metrics) string {
	t.Helper()
	factory := prometheusexporter.NewFactory()
	cfg := factory.CreateDefaultConfig().(*prometheusexporter.Config)
	cfg.ServerConfig.NetAddr.Endpoint = freeAddress(t)
	exp, err := factory.CreateMetrics(context.Background(), exportertest.NewNopSettings(factory.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { assert.NoError(t, exp.Shutdown(context.Background())) })
	require.NoError(t, exp.ConsumeMetrics(context.Background(), md))

	resp, err := http.Get("http://" + cfg.ServerConfig.NetAddr.Endpoint + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var b strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&b)
	require.NoError(t, err)
	return b.String()
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
