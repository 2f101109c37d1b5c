package rayservereceiver

import (
	"context"
	"net/netip"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// nodeAddressLabel is the tag Ray's metrics agent puts on every series with the IP of the Ray node whose
// process recorded it (NodeAddressKey in Ray's src/ray/stats/tag_defs.cc): a Serve replica's series carry
// the IP of the node the replica runs on. KubeRay starts each node with --node-ip-address=$MY_POD_IP, so
// there the node IP is the pod's IP.
const nodeAddressLabel = "NodeAddress"

// byNode hands the scrape on with each Ray node's series under a resource that names the node's IP as
// k8s.pod.ip, the attribute k8s_attributes associates a pod on. A node's own metrics endpoint serves one
// node's series (the usual page: the whole resource, llm.engine.up and the Serve API's states included, is
// that node's); a page that gathers several nodes is split into one resource per node, and what carries no
// node address stays on the scrape's resource.
type byNode struct{ next consumer.Metrics }

func (b byNode) Capabilities() consumer.Capabilities { return consumer.Capabilities{MutatesData: true} }

func (b byNode) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	splitByNode(md)
	return b.next.ConsumeMetrics(ctx, md)
}

// nodeOf is the node IP a data point names, "" when it names none or something that is no IP address.
func nodeOf(attrs pcommon.Map) string {
	v, ok := attrs.Get(nodeAddressLabel)
	if !ok {
		return ""
	}
	addr, err := netip.ParseAddr(v.Str())
	if err != nil {
		return ""
	}
	return addr.String()
}

func splitByNode(md pmetric.Metrics) {
	rms := md.ResourceMetrics()
	for i, n := 0, rms.Len(); i < n; i++ {
		rm := rms.At(i)
		nodes := nodesOf(rm)
		switch len(nodes) {
		case 0:
		case 1:
			for node := range nodes {
				rm.Resource().Attributes().PutStr(schema.AttrK8sPodIp, node)
			}
		default:
			splitResource(rm, rms)
		}
	}
}

func nodesOf(rm pmetric.ResourceMetrics) map[string]struct{} {
	nodes := map[string]struct{}{}
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		ms := sms.At(i).Metrics()
		for j := 0; j < ms.Len(); j++ {
			forEachPointAttrs(ms.At(j), func(attrs pcommon.Map) {
				if node := nodeOf(attrs); node != "" {
					nodes[node] = struct{}{}
				}
			})
		}
	}
	return nodes
}

func forEachPointAttrs(m pmetric.Metric, fn func(pcommon.Map)) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		for i := 0; i < m.Gauge().DataPoints().Len(); i++ {
			fn(m.Gauge().DataPoints().At(i).Attributes())
		}
	case pmetric.MetricTypeSum:
		for i := 0; i < m.Sum().DataPoints().Len(); i++ {
			fn(m.Sum().DataPoints().At(i).Attributes())
		}
	case pmetric.MetricTypeHistogram:
		for i := 0; i < m.Histogram().DataPoints().Len(); i++ {
			fn(m.Histogram().DataPoints().At(i).Attributes())
		}
	case pmetric.MetricTypeSummary:
		for i := 0; i < m.Summary().DataPoints().Len(); i++ {
			fn(m.Summary().DataPoints().At(i).Attributes())
		}
	default: // the scraper writes no other type
	}
}

// splitResource moves the data points of rm that name a node into one resource per node, appended to rms,
// in the order the nodes first appear; metrics left without points are removed from rm.
func splitResource(rm pmetric.ResourceMetrics, rms pmetric.ResourceMetricsSlice) {
	perNode := map[string]pmetric.ResourceMetrics{}
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		sm := sms.At(i)
		// The metric of each node's resource that receives this scope's current metric's points.
		scopes := map[string]pmetric.ScopeMetrics{}
		sm.Metrics().RemoveIf(func(m pmetric.Metric) bool {
			targets := map[string]pmetric.Metric{}
			target := func(node string) pmetric.Metric {
				if t, ok := targets[node]; ok {
					return t
				}
				dest, ok := scopes[node]
				if !ok {
					nodeRM, seen := perNode[node]
					if !seen {
						nodeRM = rms.AppendEmpty()
						rm.Resource().CopyTo(nodeRM.Resource())
						nodeRM.Resource().Attributes().PutStr(schema.AttrK8sPodIp, node)
						nodeRM.SetSchemaUrl(rm.SchemaUrl())
						perNode[node] = nodeRM
					}
					dest = nodeRM.ScopeMetrics().AppendEmpty()
					sm.Scope().CopyTo(dest.Scope())
					dest.SetSchemaUrl(sm.SchemaUrl())
					scopes[node] = dest
				}
				t := dest.Metrics().AppendEmpty()
				shellOf(m, t)
				targets[node] = t
				return t
			}
			return movePoints(m, target)
		})
	}
}

// shellOf makes dst a metric like src without data points.
func shellOf(src, dst pmetric.Metric) {
	dst.SetName(src.Name())
	dst.SetDescription(src.Description())
	dst.SetUnit(src.Unit())
	src.Metadata().CopyTo(dst.Metadata())
	switch src.Type() {
	case pmetric.MetricTypeGauge:
		dst.SetEmptyGauge()
	case pmetric.MetricTypeSum:
		s := dst.SetEmptySum()
		s.SetAggregationTemporality(src.Sum().AggregationTemporality())
		s.SetIsMonotonic(src.Sum().IsMonotonic())
	case pmetric.MetricTypeHistogram:
		dst.SetEmptyHistogram().SetAggregationTemporality(src.Histogram().AggregationTemporality())
	case pmetric.MetricTypeSummary:
		dst.SetEmptySummary()
	default:
	}
}

// movePoints moves each of m's points that names a node to target(node), and reports whether m is left
// without points.
func movePoints(m pmetric.Metric, target func(node string) pmetric.Metric) bool {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		dps := m.Gauge().DataPoints()
		dps.RemoveIf(func(dp pmetric.NumberDataPoint) bool {
			node := nodeOf(dp.Attributes())
			if node != "" {
				dp.MoveTo(target(node).Gauge().DataPoints().AppendEmpty())
			}
			return node != ""
		})
		return dps.Len() == 0
	case pmetric.MetricTypeSum:
		dps := m.Sum().DataPoints()
		dps.RemoveIf(func(dp pmetric.NumberDataPoint) bool {
			node := nodeOf(dp.Attributes())
			if node != "" {
				dp.MoveTo(target(node).Sum().DataPoints().AppendEmpty())
			}
			return node != ""
		})
		return dps.Len() == 0
	case pmetric.MetricTypeHistogram:
		dps := m.Histogram().DataPoints()
		dps.RemoveIf(func(dp pmetric.HistogramDataPoint) bool {
			node := nodeOf(dp.Attributes())
			if node != "" {
				dp.MoveTo(target(node).Histogram().DataPoints().AppendEmpty())
			}
			return node != ""
		})
		return dps.Len() == 0
	case pmetric.MetricTypeSummary:
		dps := m.Summary().DataPoints()
		dps.RemoveIf(func(dp pmetric.SummaryDataPoint) bool {
			node := nodeOf(dp.Attributes())
			if node != "" {
				dp.MoveTo(target(node).Summary().DataPoints().AppendEmpty())
			}
			return node != ""
		})
		return dps.Len() == 0
	default:
		return false
	}
}
