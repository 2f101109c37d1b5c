package main

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servescope/servescope/internal/fleetsim"
	"github.com/servescope/servescope/internal/schema"
)

// traces prints explained slow requests, a few per second; the rest are counted.
func (c *console) traces(req ptraceotlp.ExportRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rss := req.Traces().ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		res := rss.At(i).Resource().Attributes()
		instance := ""
		if v, ok := res.Get(schema.AttrServiceInstanceID); ok {
			instance = v.Str()
		}
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				a := spans.At(k).Attributes()
				cause, ok := a.Get(schema.AttrLLMRootCause)
				if !ok {
					continue
				}
				c.explained++
				if slow, _ := a.Get(schema.AttrLLMSlow); !slow.Bool() {
					continue
				}
				c.slow++
				c.slowByCause[cause.Str()]++
				if id, ok := a.Get(schema.AttrGenAIRequestID); ok {
					c.ours[id.Str()] = cause.Str()
				}
				at := c.since(int64(spans.At(k).EndTimestamp()))
				if sec := int64(at); sec != c.printedAt {
					c.printedAt, c.printedInSec = sec, 0
				}
				if c.printedInSec >= c.perSecond {
					c.suppressed++
					continue
				}
				c.printedInSec++
				tenant, _ := a.Get(schema.AttrLLMTenant)
				evidence, _ := a.Get(schema.AttrLLMRootCauseEvidence)
				name := instance
				if r := c.replicas[instance]; r != nil {
					name = r.name
				}
				fmt.Fprintf(c.out, "  slow  %5.1fs  %-9s %-9s %s\n", at, name, tenant.Str(), evidence.Str())
			}
		}
	}
}

// metrics keeps each replica's latest state and health.
func (c *console) metrics(req pmetricotlp.ExportRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rms := req.Metrics().ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		resInstance := ""
		if v, ok := rms.At(i).Resource().Attributes().Get(schema.AttrServiceInstanceID); ok {
			resInstance = v.Str()
		}
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				var dps pmetric.NumberDataPointSlice
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					dps = m.Gauge().DataPoints()
				default:
					continue
				}
				for n := 0; n < dps.Len(); n++ {
					dp := dps.At(n)
					instance := resInstance
					if v, ok := dp.Attributes().Get(schema.AttrServiceInstanceID); ok {
						instance = v.Str()
					}
					r := c.replicas[instance]
					if r == nil {
						continue
					}
					v := dp.DoubleValue()
					if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
						v = float64(dp.IntValue())
					}
					switch m.Name() {
					case schema.MetricLLMSchedulerRequestsWaiting:
						r.waiting = v
					case schema.MetricLLMSchedulerRequestsRunning:
						r.running = v
					case schema.MetricLLMKVCacheUtilization:
						r.kv = v
					case schema.MetricHwGPUUtilization:
						r.gpu = v
					case schema.MetricLLMReplicaHealthScore:
						r.health = v
					}
				}
			}
		}
	}
}

// logs prints incidents as they start and end, with the recommended actions.
func (c *console) logs(req plogotlp.ExportRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rls := req.Logs().ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			recs := sls.At(j).LogRecords()
			for k := 0; k < recs.Len(); k++ {
				rec := recs.At(k)
				a := rec.Attributes()
				state, _ := a.Get(schema.AttrLLMIncidentState)
				at := c.since(int64(rec.Timestamp()))
				body := rec.Body().Str()
				for inst, r := range c.replicas { // host:port means little on a console; the replica's name does
					body = strings.ReplaceAll(body, inst, r.name)
				}
				line := fmt.Sprintf("  INCIDENT %-6s %5.1fs  %s", strings.ToUpper(state.Str()), at, body)
				fmt.Fprintln(c.out, line)
				if actions, ok := a.Get(schema.AttrLLMIncidentActions); ok {
					for n := 0; n < actions.Slice().Len() && n < 2; n++ {
						fmt.Fprintf(c.out, "           → %s\n", actions.Slice().At(n).Str())
					}
				}
				if state.Str() == "start" {
					c.incidents = append(c.incidents, fmt.Sprintf("%5.1fs %s", at, body))
				}
			}
		}
	}
}

// tick prints the replicas' state every 5 simulated seconds.
func (c *console) tick(now float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now-c.lastTable < 5 {
		return
	}
	c.lastTable = now
	fmt.Fprintf(c.out, "\n  t=%3.0fs  replica    engine  waiting  running   KV    GPU   health   (slow so far: %d; %d not printed)\n", now, c.slow, c.suppressed)
	for _, inst := range c.order {
		r := c.replicas[inst]
		fmt.Fprintf(c.out, "          %-10s %-7s %7s  %7s  %5s  %5s  %6s\n", r.name, r.engine, num(r.waiting, "%.0f"), num(r.running, "%.0f"),
			pct(r.kv), pct(r.gpu), num(r.health, "%.2f"))
	}
	fmt.Fprintln(c.out)
}

func num(v float64, format string) string {
	if v < 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func pct(v float64) string {
	if v < 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

// summary closes the demo: what was explained, the causes, how they compare with the simulator's ground truth.
func (c *console) summary(truth map[string]fleetsim.Truth) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.out, "\nservescope explained %d requests; %d were slow.\n", c.explained, c.slow)
	causes := make([]string, 0, len(c.slowByCause))
	for k := range c.slowByCause {
		causes = append(causes, k)
	}
	sort.Slice(causes, func(i, j int) bool { return c.slowByCause[causes[i]] > c.slowByCause[causes[j]] })
	for _, k := range causes {
		fmt.Fprintf(c.out, "  %-20s %d\n", k, c.slowByCause[k])
	}
	agree, judged := 0, 0
	for id, t := range truth {
		if ours, ok := c.ours[id]; ok && t.Slow {
			judged++
			if ours == t.Cause {
				agree++
			}
		}
	}
	if judged > 0 {
		fmt.Fprintf(c.out, "The simulator's own measurement agrees on the cause of %d of those %d slow requests (%.0f%%).\n", agree, judged, 100*float64(agree)/float64(judged))
	}
	if len(c.incidents) > 0 {
		fmt.Fprintln(c.out, "Incidents opened:")
		for _, i := range c.incidents {
			fmt.Fprintln(c.out, "  "+i)
		}
	}
}
