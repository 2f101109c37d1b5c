package llmsignalsconnector

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/fleetstate"
	"github.com/servescope/servescope/internal/fleetstate/fleetstatetest"
	"github.com/servescope/servescope/internal/schema"
)

// Several of llm_root_cause's series fold into one tenant: a tenant's prompt families, and the tenants beyond
// max_tenants into _other. Growth is taken per series, so the folding neither reads a switch between series
// as a counter restart nor loses any of it.
func TestUsageTakesGrowthPerSeries(t *testing.T) {
	u := newUsage(1) // acme is tracked; globex and initech fold into _other
	store := fleetstate.New(fleetstate.Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}})
	cachedTokens := func(sec float64, series map[[2]string]float64) pmetric.Metrics {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(schema.MetricLLMTenantPromptTokens)
		s := m.SetEmptySum()
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for tf, v := range series {
			dp := s.DataPoints().AppendEmpty()
			dp.SetTimestamp(pcommon.Timestamp(fleetstatetest.At(sec)))
			dp.SetDoubleValue(v)
			a := dp.Attributes()
			a.PutStr(schema.AttrServiceInstanceID, "r1")
			a.PutStr(schema.AttrGenAIRequestModel, model)
			a.PutStr(schema.AttrLLMTenant, tf[0])
			a.PutStr(schema.AttrLLMPromptFamily, tf[1])
			a.PutStr(schema.AttrLLMPromptCache, "cached")
		}
		return md
	}
	u.observe(cachedTokens(0, map[[2]string]float64{{"acme", "agent"}: 100, {"acme", "docqa"}: 1000, {"globex", "support"}: 50, {"initech", "report"}: 500}), store)
	u.observe(cachedTokens(10, map[[2]string]float64{{"acme", "agent"}: 110, {"acme", "docqa"}: 1020, {"globex", "support"}: 55, {"initech", "report"}: 530}), store)
	cached := u.take("r1", true).cached
	assert.Equal(t, 100.0+1000+10+20, cached[tenantModel{"acme", model}], "both families, counted from their start")
	assert.Equal(t, 50.0+500+5+30, cached[tenantModel{"_other", model}])
}
