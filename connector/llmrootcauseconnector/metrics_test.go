package llmrootcauseconnector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/schema"
)

// The aggregator finds a request's series through a row per set of dimension values; a tenant or prompt
// family that loses its place loses its series, and must then count afresh when it comes back, not into
// the series the row still pointed at.
func TestSeriesCountAfreshAfterTheirTenantIsForgotten(t *testing.T) {
	cfg := createDefaultConfig()
	start := time.Unix(1000, 0)
	a := newAggregator(cfg, start)
	span := ptrace.NewSpan()
	req := func(tenant, family string) *request {
		return &request{
			span: span, model: testModel, engine: "vllm", replica: "r1", tenantSlot: tenant, family: family,
			queue: 0.1, prefill: 0.2, decode: 1, other: 0.01, e2e: 1.31, promptTokens: 100, genTokens: 10, cachedTokens: 40,
		}
	}
	fast := verdict{cause: schema.RootCauseNone}
	for range 3 {
		a.record(req("acme", "acme-agent"), fast, start)
	}
	a.forget(schema.AttrLLMTenant, "acme")
	a.record(req("acme", "acme-agent"), fast, start)
	a.record(req("globex", "acme-agent"), fast, start)
	a.forget(schema.AttrLLMPromptFamily, "acme-agent")
	a.record(req("globex", "acme-agent"), fast, start)

	md := pmetric.NewMetrics()
	a.flush(start.Add(time.Second), md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty())
	queued, causes, cached := map[string]uint64{}, map[string]float64{}, map[string]float64{}
	forEachPhaseDuration(t, md, func(dp pmetric.HistogramDataPoint) {
		if phase, _ := dp.Attributes().Get(schema.AttrLLMPhase); phase.Str() == schema.PhaseQueue {
			tenant, _ := dp.Attributes().Get(schema.AttrLLMTenant)
			queued[tenant.Str()] += dp.Count()
		}
	})
	forEachPoint(t, md, schema.MetricLLMRequestRootCause, func(dp pmetric.NumberDataPoint) {
		tenant, _ := dp.Attributes().Get(schema.AttrLLMTenant)
		causes[tenant.Str()] += dp.DoubleValue()
	})
	forEachPoint(t, md, schema.MetricLLMTenantPromptTokens, func(dp pmetric.NumberDataPoint) {
		tenant, _ := dp.Attributes().Get(schema.AttrLLMTenant)
		if c, _ := dp.Attributes().Get(schema.AttrLLMPromptCache); c.Str() == "cached" {
			cached[tenant.Str()] += dp.DoubleValue()
		}
	})
	require.NotEmpty(t, queued)
	assert.Equal(t, map[string]uint64{"acme": 1, "globex": 2}, queued, "acme counts only what came after it was forgotten")
	assert.Equal(t, map[string]float64{"acme": 1, "globex": 2}, causes)
	assert.Equal(t, map[string]float64{"globex": 40}, cached,
		"the prompt family's series went with it: acme's and globex's earlier tokens with it, globex's last 40 after")
}
