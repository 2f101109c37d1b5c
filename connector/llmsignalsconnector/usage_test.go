package llmsignalsconnector

import (
	"fmt"
	"testing"
	"time"

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
	cfg := createDefaultConfig()
	cfg.MaxTenants = 1
	u := newUsage(cfg, newCostBook()) // acme is tracked (and the busiest); globex and initech fold into _other
	store := fleetstate.New(fleetstate.Config{ReplicaKeys: []string{schema.AttrServiceInstanceID}})
	type series struct {
		tenant, family string
		value          float64
	}
	// In order: the first tenant seen is the one tracked.
	cachedTokens := func(sec float64, all ...series) pmetric.Metrics {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(schema.MetricLLMTenantPromptTokens)
		s := m.SetEmptySum()
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for _, one := range all {
			dp := s.DataPoints().AppendEmpty()
			dp.SetTimestamp(pcommon.Timestamp(fleetstatetest.At(sec)))
			dp.SetDoubleValue(one.value)
			a := dp.Attributes()
			a.PutStr(schema.AttrServiceInstanceID, "r1")
			a.PutStr(schema.AttrGenAIRequestModel, model)
			a.PutStr(schema.AttrLLMTenant, one.tenant)
			a.PutStr(schema.AttrLLMPromptFamily, one.family)
			a.PutStr(schema.AttrLLMPromptCache, "cached")
		}
		return md
	}
	u.observe(cachedTokens(0, series{"acme", "agent", 100}, series{"acme", "docqa", 1000}, series{"globex", "support", 50}, series{"initech", "report", 500}), store)
	u.observe(cachedTokens(10, series{"acme", "agent", 110}, series{"acme", "docqa", 1020}, series{"globex", "support", 55}, series{"initech", "report", 530}), store)
	cached := u.take("r1", true).cached
	assert.Equal(t, 100.0+1000+10+20, cached[tenantModel{"acme", model}], "both families, counted from their start")
	assert.Equal(t, 50.0+500+5+30, cached[tenantModel{"_other", model}])
}

// The last value of every cumulative series is kept only while the series is seen: a flood of one-off series
// does not grow the map for the life of the process.
func TestUsageForgetsSeriesNotSeen(t *testing.T) {
	cfg := createDefaultConfig()
	u := newUsage(cfg, newCostBook())
	u.newest = 0
	for i := range 1000 {
		u.grow(fmt.Sprint("series-", i), 1)
	}
	u.newest = int64(time.Minute)
	u.grow("recent", 1)
	u.sweep(int64(11*time.Minute), cfg)
	assert.Len(t, u.last, 1, "only the series seen within 10 minutes is kept")
	assert.Contains(t, u.last, "recent")
}
