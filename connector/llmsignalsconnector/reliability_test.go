package llmsignalsconnector

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/connector/llmsignalsconnector/internal/metadata"
	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/schema"
)

// A tenant or model name of 4 MiB in llm_root_cause's counters is cut before it becomes a cost label.
func TestCostLabelsAreCut(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Cost.DefaultGPUPricePerHour = 2 })
	huge := strings.Repeat("t", 4<<20)
	r.run([]string{"r1"}, 60, func(_ string, sec float64, _ *replicaState) {
		if sec >= 0 {
			r.feed(rootCauseCounters("r1", sec, map[string]tenantTotals{huge: {tokens: 100 * (sec + 10), requests: sec + 10}}))
		}
	})
	all := r.metrics.AllMetrics()
	require.NotEmpty(t, all)
	longest := 0
	forEach(all[len(all)-1], schema.MetricLLMCostAmount, func(dp pmetric.NumberDataPoint) {
		longest = max(longest, len(attrvalue.String(dp.Attributes(), schema.AttrLLMTenant)))
	})
	assert.Equal(t, 256, longest)
}

// After max_tenants tenants that were seen once, a tenant that is busy later gets cost of its own.
func TestBusyTenantsWinCostSlots(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxTenants, c.Cost.DefaultGPUPricePerHour = 5, 2 })
	r.run([]string{"r1"}, 120, func(_ string, sec float64, _ *replicaState) {
		switch {
		case sec >= 0 && sec < 10:
			early := map[string]tenantTotals{}
			for i := range 5 {
				early[fmt.Sprint("one-off-", i)] = tenantTotals{tokens: 10, requests: 1}
			}
			r.feed(rootCauseCounters("r1", sec, early))
		case sec >= 10:
			r.feed(rootCauseCounters("r1", sec, map[string]tenantTotals{"busy": {tokens: 1000 * sec, requests: sec}}))
		}
	})
	all := r.metrics.AllMetrics()
	amount := map[string]float64{}
	forEach(all[len(all)-1], schema.MetricLLMCostAmount, func(dp pmetric.NumberDataPoint) {
		amount[attrvalue.String(dp.Attributes(), schema.AttrLLMTenant)] += dp.DoubleValue()
	})
	assert.Positive(t, amount["busy"], "the busy tenant is billed under its own name, not _other")
	assert.LessOrEqual(t, len(amount), 5+2, "max_tenants, _other and unattributed")
}

// A fault in one evaluation is reported and skipped; the next evaluation runs.
func TestAFaultCostsOneEvaluation(t *testing.T) {
	r := newRig(t)
	cr := r.ins[0].(*input).core
	faults := 0
	cr.mu.Lock()
	cr.beforeEvaluate = func() {
		if faults == 0 {
			faults++
			panic("injected fault")
		}
	}
	cr.mu.Unlock()
	r.run([]string{"r1"}, 60, func(string, float64, *replicaState) {})
	assert.Equal(t, 1, faults)
	assert.NotEmpty(t, r.lastGauges(schema.MetricLLMReplicaHealthScore), "evaluations go on after the fault")
}

// Shutdown without Start leaves no stale core; a later create uses its own configuration.
func TestLifecycle(t *testing.T) {
	f := NewFactory()
	set := connectortest.NewNopSettings(metadata.Type)
	ctx := context.Background()
	first := createDefaultConfig()
	first.MaxTenants = 7
	in, err := f.CreateMetricsToMetrics(ctx, set, first, consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, in.Shutdown(ctx))
	require.NoError(t, in.Shutdown(ctx))
	second := createDefaultConfig()
	second.MaxTenants = 9
	again, err := f.CreateMetricsToLogs(ctx, set, second, consumertest.NewNop())
	require.NoError(t, err)
	cr := again.(*input).core
	assert.Equal(t, 9, cr.cfg.MaxTenants)
	for range 2 {
		require.NoError(t, again.Start(ctx, componenttest.NewNopHost()))
		require.NoError(t, again.Start(ctx, componenttest.NewNopHost()))
		require.NoError(t, again.Shutdown(ctx))
		assert.Zero(t, again.(*input).shared.Running())
		assert.Zero(t, cores.Len(), "no core is left behind once nothing runs")
	}
}
