// Package dashboards generates servescope's Grafana dashboards and Prometheus alert rules from the canonical
// schema (metric names as the prometheus exporter writes them) and llm_signals' detector list, so they cannot
// drift from what the collector emits. `make generate` writes them; a test fails when they are stale.
package dashboards

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/servescope/servescope/internal/promnames"
	"github.com/servescope/servescope/internal/schema"
)

// Panel is one graph: a title, its unit and its PromQL expressions.
type Panel struct {
	Title string
	Unit  string // Grafana unit id
	Exprs []Expr
}

// Expr is one query and its legend.
type Expr struct {
	Query  string
	Legend string
}

// Dashboard is one generated dashboard.
type Dashboard struct {
	UID, Title string
	Panels     []Panel
}

// Set builds every dashboard from the schema.
func Set(sch *schema.Schema) ([]Dashboard, error) {
	var missing []string
	n := func(metric string) string {
		m := sch.Metric(metric)
		if m == nil {
			missing = append(missing, metric)
			return "MISSING"
		}
		return promnames.Name(m)
	}
	l := promnames.Label
	phase, replica, model, tenant := l(schema.AttrLLMPhase), l(schema.AttrServiceInstanceID), l(schema.AttrGenAIRequestModel), l(schema.AttrLLMTenant)
	family := l(schema.AttrLLMPromptFamily)
	dash := []Dashboard{
		{UID: "servescope-requests", Title: "servescope: request explainability", Panels: []Panel{
			{Title: "Mean seconds per phase", Unit: "s", Exprs: []Expr{{
				fmt.Sprintf("sum by (%s) (rate(%s_sum[5m])) / sum by (%s) (rate(%s_count[5m]))", phase, n(schema.MetricLLMRequestPhaseDuration), phase, n(schema.MetricLLMRequestPhaseDuration)), "{{" + phase + "}}",
			}}},
			{Title: "Queue phase p50 / p95 / p99", Unit: "s", Exprs: quantiles(n(schema.MetricLLMRequestPhaseDuration), phase+`="`+schema.PhaseQueue+`"`)},
			{Title: "Time to first token p50 / p95 / p99 (engines)", Unit: "s", Exprs: quantiles(n(schema.MetricGenAIServerTimeToFirstToken), "")},
			{Title: "Slow requests by root cause", Unit: "reqps", Exprs: []Expr{{
				fmt.Sprintf(`sum by (%s) (rate(%s{%s!="%s"}[5m]))`, l(schema.AttrLLMRootCause), n(schema.MetricLLMRequestRootCause), l(schema.AttrLLMRootCause), schema.RootCauseNone), "{{" + l(schema.AttrLLMRootCause) + "}}",
			}}},
			{Title: "Slow requests by the limit they broke", Unit: "reqps", Exprs: []Expr{{
				fmt.Sprintf("sum by (%s) (rate(%s[5m]))", l(schema.AttrLLMSlowReason), n(schema.MetricLLMRequestSlow)), "{{" + l(schema.AttrLLMSlowReason) + "}}",
			}}},
			{Title: "Slow share by tenant", Unit: "percentunit", Exprs: []Expr{{
				fmt.Sprintf(`sum by (%s) (rate(%s{%s!="%s"}[5m])) / sum by (%s) (rate(%s[5m]))`, tenant, n(schema.MetricLLMRequestRootCause), l(schema.AttrLLMRootCause), schema.RootCauseNone, tenant, n(schema.MetricLLMRequestRootCause)), "{{" + tenant + "}}",
			}}},
		}},
		{UID: "servescope-kv-cache", Title: "servescope: KV cache", Panels: []Panel{
			{Title: "KV-cache utilization by replica", Unit: "percentunit", Exprs: []Expr{{fmt.Sprintf("max by (instance) (%s)", n(schema.MetricLLMKVCacheUtilization)), "{{instance}}"}}},
			{Title: "Prefix-cache hit ratio", Unit: "percentunit", Exprs: []Expr{{
				fmt.Sprintf("sum by (instance) (rate(%s[5m])) / sum by (instance) (rate(%s[5m]))", n(schema.MetricLLMPrefixCacheHits), n(schema.MetricLLMPrefixCacheQueries)), "{{instance}}",
			}}},
			{Title: "Cached share of prompt tokens by tenant", Unit: "percentunit", Exprs: []Expr{{
				fmt.Sprintf(`sum by (%s) (rate(%s{%s="cached"}[5m])) / sum by (%s) (rate(%s[5m]))`, tenant, n(schema.MetricLLMTenantPromptTokens), l(schema.AttrLLMPromptCache), tenant, n(schema.MetricLLMTenantPromptTokens)), "{{" + tenant + "}}",
			}}},
			// cached / (cached + uncached) per tenant and prompt family, from requests that report cached tokens.
			{Title: "Prefix-cache hit ratio by tenant and prompt family", Unit: "percentunit", Exprs: []Expr{{
				fmt.Sprintf(`sum by (%[1]s, %[2]s) (rate(%[3]s{%[4]s="cached"}[5m])) / sum by (%[1]s, %[2]s) (rate(%[3]s{%[4]s=~"cached|uncached"}[5m]))`,
					tenant, family, n(schema.MetricLLMTenantPromptTokens), l(schema.AttrLLMPromptCache)), "{{" + tenant + "}} / {{" + family + "}}",
			}}},
			{Title: "Preemptions", Unit: "ops", Exprs: []Expr{{fmt.Sprintf("sum by (instance) (rate(%s[5m]))", n(schema.MetricLLMSchedulerPreemptions)), "{{instance}}"}}},
			// Every observation of the idle-before-eviction histogram is one evicted block; vLLM tracks a sample of
			// its blocks (--kv-cache-metrics-sample), so the rate is of sampled blocks.
			{Title: "KV-cache block evictions (sampled blocks)", Unit: "ops", Exprs: []Expr{{
				fmt.Sprintf("sum by (instance) (rate(%s_count[5m]))", n(schema.MetricLLMKVCacheBlockIdleBeforeEvict)), "{{instance}}",
			}}},
			{Title: "Idle time before eviction p50 / p95", Unit: "s", Exprs: []Expr{
				{fmt.Sprintf("histogram_quantile(0.5, sum by (le, instance) (rate(%s_bucket[5m])))", n(schema.MetricLLMKVCacheBlockIdleBeforeEvict)), "p50 {{instance}}"},
				{fmt.Sprintf("histogram_quantile(0.95, sum by (le, instance) (rate(%s_bucket[5m])))", n(schema.MetricLLMKVCacheBlockIdleBeforeEvict)), "p95 {{instance}}"},
			}},
		}},
		{UID: "servescope-scheduler", Title: "servescope: scheduler", Panels: []Panel{
			{Title: "Waiting requests", Unit: "short", Exprs: []Expr{{fmt.Sprintf("sum by (instance) (%s)", n(schema.MetricLLMSchedulerRequestsWaiting)), "{{instance}}"}}},
			{Title: "Running requests", Unit: "short", Exprs: []Expr{{fmt.Sprintf("sum by (instance) (%s)", n(schema.MetricLLMSchedulerRequestsRunning)), "{{instance}}"}}},
			{Title: "Queue time p95 (engines)", Unit: "s", Exprs: []Expr{{
				fmt.Sprintf("histogram_quantile(0.95, sum by (le, instance) (rate(%s_bucket[5m])))", n(schema.MetricLLMRequestQueueTime)), "{{instance}}",
			}}},
			{Title: "Finished requests", Unit: "reqps", Exprs: []Expr{{fmt.Sprintf("sum by (instance) (rate(%s[5m]))", n(schema.MetricLLMRequestsFinished)), "{{instance}}"}}},
		}},
		{UID: "servescope-gpu", Title: "servescope: GPUs", Panels: []Panel{
			{Title: "GPU utilization", Unit: "percentunit", Exprs: []Expr{{fmt.Sprintf("avg by (%s) (%s)", l(schema.AttrHwID), n(schema.MetricHwGPUUtilization)), "{{" + l(schema.AttrHwID) + "}}"}}},
			{Title: "GPU memory used", Unit: "bytes", Exprs: []Expr{{fmt.Sprintf("max by (%s) (%s)", l(schema.AttrHwID), n(schema.MetricHwGPUMemoryUsage)), "{{" + l(schema.AttrHwID) + "}}"}}},
			{Title: "Power", Unit: "watt", Exprs: []Expr{{fmt.Sprintf("max by (%s) (%s)", l(schema.AttrHwID), n(schema.MetricHwPower)), "{{" + l(schema.AttrHwID) + "}}"}}},
			{Title: "SM clock", Unit: "hertz", Exprs: []Expr{{fmt.Sprintf(`max by (%s) (%s{%s="sm"})`, l(schema.AttrHwID), n(schema.MetricNvidiaGPUClockFrequency), l(schema.AttrNvidiaGPUClockType)), "{{" + l(schema.AttrHwID) + "}}"}}},
		}},
		{UID: "servescope-fleet", Title: "servescope: fleet signals", Panels: []Panel{
			{Title: "Replica health", Unit: "percentunit", Exprs: []Expr{{fmt.Sprintf("max by (%s) (%s)", replica, n(schema.MetricLLMReplicaHealthScore)), "{{" + replica + "}}"}}},
			{Title: "Routing score", Unit: "percentunit", Exprs: []Expr{{fmt.Sprintf("max by (%s) (%s)", replica, n(schema.MetricLLMReplicaRoutingScore)), "{{" + replica + "}}"}}},
			{Title: "Replicas: running, desired, forecast", Unit: "short", Exprs: []Expr{
				{fmt.Sprintf("max by (%s) (%s)", model, n(schema.MetricLLMPoolReplicas)), "running {{" + model + "}}"},
				{fmt.Sprintf("max by (%s) (%s)", model, n(schema.MetricLLMPoolDesiredReplicas)), "desired {{" + model + "}}"},
				{fmt.Sprintf("max by (%s) (%s)", model, n(schema.MetricLLMPoolForecastReplicas)), "forecast {{" + model + "}}"},
			}},
			{Title: "Why the desired replicas", Unit: "short", Exprs: []Expr{{fmt.Sprintf("max by (%s, %s) (%s) == 1", model, l(schema.AttrLLMScaleReason), n(schema.MetricLLMPoolScaleReason)), "{{" + model + "}}: {{" + l(schema.AttrLLMScaleReason) + "}}"}}},
			{Title: "Open incidents", Unit: "short", Exprs: []Expr{{fmt.Sprintf("sum by (%s) (%s)", l(schema.AttrLLMIncidentDetector), n(schema.MetricLLMIncidentActive)), "{{" + l(schema.AttrLLMIncidentDetector) + "}}"}}},
		}},
		{UID: "servescope-cost", Title: "servescope: cost", Panels: []Panel{
			{Title: "Cost per hour by tenant", Unit: "currencyUSD", Exprs: []Expr{{fmt.Sprintf("sum by (%s) (rate(%s[15m])) * 3600", tenant, n(schema.MetricLLMCostAmount)), "{{" + tenant + "}}"}}},
			{Title: "Cost per hour by model", Unit: "currencyUSD", Exprs: []Expr{{fmt.Sprintf("sum by (%s) (rate(%s[15m])) * 3600", model, n(schema.MetricLLMCostAmount)), "{{" + model + "}}"}}},
			{Title: "GPU time by category", Unit: "percentunit", Exprs: []Expr{{
				fmt.Sprintf("sum by (%s) (rate(%s[15m])) / ignoring(%s) group_left sum(rate(%s[15m]))", l(schema.AttrLLMCostCategory), n(schema.MetricLLMCostGPUTimeByCategory), l(schema.AttrLLMCostCategory), n(schema.MetricLLMCostGPUTimeByCategory)), "{{" + l(schema.AttrLLMCostCategory) + "}}",
			}}},
			{Title: "Prefix-cache savings per hour", Unit: "currencyUSD", Exprs: []Expr{{fmt.Sprintf("sum by (%s) (rate(%s[15m])) * 3600", tenant, n(schema.MetricLLMCostPrefixCacheSavings)), "{{" + tenant + "}}"}}},
		}},
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("dashboards use metrics the schema does not have: %v", missing)
	}
	return dash, nil
}

func quantiles(histogram, selector string) []Expr {
	var out []Expr
	for _, q := range []string{"0.5", "0.95", "0.99"} {
		sel := ""
		if selector != "" {
			sel = "{" + selector + "}"
		}
		out = append(out, Expr{fmt.Sprintf("histogram_quantile(%s, sum by (le) (rate(%s_bucket%s[5m])))", q, histogram, sel), "p" + strings.TrimPrefix(strings.TrimPrefix(q, "0."), "0")})
	}
	return out
}

// Rule is one alerting rule.
type Rule struct {
	Alert, Expr, For, Severity, Summary string
}

// Rules are the alerts: one per llm_signals detector (its incident open), and the raw-state ones that need
// no connector.
func Rules(sch *schema.Schema) []Rule {
	n := func(metric string) string { return promnames.Name(sch.Metric(metric)) }
	l := promnames.Label
	var rules []Rule
	for _, detector := range schema.IncidentDetectorValues() {
		rules = append(rules, Rule{
			Alert: "LLM_" + camel(detector), For: "0s", Severity: schema.IncidentDetectorSeverity(detector),
			Expr:    fmt.Sprintf(`max by (%s, %s) (%s{%s="%s"}) == 1`, l(schema.AttrGenAIRequestModel), l(schema.AttrServiceInstanceID), n(schema.MetricLLMIncidentActive), l(schema.AttrLLMIncidentDetector), detector),
			Summary: fmt.Sprintf("llm_signals opened a %s incident on {{ $labels.%s }}; the incident log record has the evidence and actions", detector, l(schema.AttrServiceInstanceID)),
		})
	}
	rules = append(rules,
		Rule{
			Alert: "LLMEngineDown", For: "1m", Severity: schema.IncidentSeverityCritical, Expr: fmt.Sprintf("%s == 0", n(schema.MetricLLMEngineUp)),
			Summary: "the engine at {{ $labels.instance }} does not answer its metrics endpoint",
		},
		Rule{
			Alert: "LLMGPUXIDErrors", For: "0s", Severity: schema.IncidentSeverityCritical, Expr: fmt.Sprintf(`increase(%s{%s="xid"}[5m]) > 0`, n(schema.MetricHwErrors), l(schema.AttrErrorType)),
			Summary: "GPU {{ $labels.hw_id }} reported XID errors",
		},
	)
	return rules
}

func camel(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// Grafana renders one dashboard as Grafana JSON (a Prometheus data source chosen at import).
func Grafana(d Dashboard) ([]byte, error) {
	var panels []map[string]any
	for i, p := range d.Panels {
		var targets []map[string]any
		for j, e := range p.Exprs {
			targets = append(targets, map[string]any{
				"refId": string(rune('A' + j)), "expr": e.Query, "legendFormat": e.Legend,
				"datasource": map[string]string{"type": "prometheus", "uid": "${datasource}"},
			})
		}
		panels = append(panels, map[string]any{
			"id": i + 1, "type": "timeseries", "title": p.Title,
			"gridPos":     map[string]int{"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i / 2)},
			"datasource":  map[string]string{"type": "prometheus", "uid": "${datasource}"},
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": p.Unit}, "overrides": []any{}},
			"targets":     targets,
		})
	}
	doc := map[string]any{
		"uid": d.UID, "title": d.Title, "schemaVersion": 39, "editable": true, "time": map[string]string{"from": "now-1h", "to": "now"},
		"tags":       []string{"servescope", "generated"},
		"templating": map[string]any{"list": []any{map[string]any{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}}},
		"panels":     panels,
	}
	return json.MarshalIndent(doc, "", "  ")
}

// RulesYAML renders the alert rules as a Prometheus rule file.
func RulesYAML(rules []Rule) []byte {
	var b strings.Builder
	b.WriteString("# Generated from schema/ and llm_signals' detectors by `make generate`; do not edit.\ngroups:\n  - name: servescope\n    rules:\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "      - alert: %s\n        expr: '%s'\n        for: %s\n        labels:\n          severity: %s\n        annotations:\n          summary: '%s'\n",
			r.Alert, strings.ReplaceAll(r.Expr, "'", "''"), r.For, r.Severity, strings.ReplaceAll(r.Summary, "'", "''"))
	}
	return []byte(b.String())
}
