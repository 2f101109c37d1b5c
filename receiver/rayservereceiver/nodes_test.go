package rayservereceiver

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
)

// podIPs maps what each data point names (the value of label, "" for none) to the k8s.pod.ip of the
// resource it arrived under, by metric name.
func podIPs(md pmetric.Metrics, label string) map[string]map[string]string {
	out := map[string]map[string]string{}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		ip := ""
		if v, ok := rms.At(i).Resource().Attributes().Get(schema.AttrK8sPodIp); ok {
			ip = v.Str()
		}
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			for k := 0; k < sms.At(j).Metrics().Len(); k++ {
				m := sms.At(j).Metrics().At(k)
				forEachPointAttrs(m, func(attrs pcommon.Map) {
					key := ""
					if v, ok := attrs.Get(label); ok {
						key = v.Str()
					}
					if out[m.Name()] == nil {
						out[m.Name()] = map[string]string{}
					}
					out[m.Name()][key] = ip
				})
			}
		}
	}
	return out
}

func scrapeOnce(t *testing.T, page []byte) pmetric.Metrics {
	t.Helper()
	srv := enginescrapetest.NewServer(t, map[string]route{"/metrics": {Body: page}})
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.DashboardEndpoint = ""
	return enginescrapetest.FirstScrape(t, f, cfg, &cfg.Config, srv)
}

// Each Serve replica's series arrive under a resource naming, as k8s.pod.ip, the IP of the Ray node the
// replica runs on (Ray's NodeAddress tag), for k8s_attributes to find the replica's pod by. The page from
// Ray's documentation gathers three nodes: two replicas and a proxy.
func TestEachReplicaArrivesUnderItsNodesAddress(t *testing.T) {
	byReplica := podIPs(scrapeOnce(t, testdata(t, "metrics_ray_serve_2.4x.txt")), "replica")
	for _, family := range []string{"ray_serve_deployment_request_counter_total", "ray_serve_deployment_replica_healthy"} {
		assert.Equal(t, map[string]string{"LLMServer#abc12": "10.0.3.17", "LLMServer#def34": "10.0.3.18"}, byReplica[family], family)
	}
	assert.Equal(t, map[string]string{"": "10.0.3.16"}, byReplica["ray_serve_deployment_queued_queries"], "the proxy's node")
	// The scrape's own state names no node when its page spans several.
	assert.Equal(t, map[string]string{"": ""}, byReplica[schema.MetricLLMEngineUp])
}

// A node's own endpoint, as Ray serves it (the real capture of Ray Serve LLM's re-exported vLLM families):
// one node, so the scrape's one resource is that node's, llm.engine.up included.
func TestANodesPageIsThatNodesResource(t *testing.T) {
	md := scrapeOnce(t, fixtures.Read(t, "vllm/datadog_ray_vllm_metrics.txt"))
	require.Equal(t, 1, md.ResourceMetrics().Len())
	ip, ok := md.ResourceMetrics().At(0).Resource().Attributes().Get(schema.AttrK8sPodIp)
	require.True(t, ok, "no k8s.pod.ip on the node's resource")
	assert.Equal(t, "10.112.217.4", ip.Str())
}

// A NodeAddress that is no IP address names no pod: nothing is associated on it, and the series stay.
func TestANodeAddressThatIsNoIPIsLeftAlone(t *testing.T) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	g := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge()
	for _, node := range []string{"ray-head", "", "10.0.0.1.5"} {
		g.DataPoints().AppendEmpty().Attributes().PutStr(nodeAddressLabel, node)
	}
	sink := new(consumertest.MetricsSink)
	require.NoError(t, byNode{sink}.ConsumeMetrics(context.Background(), md))
	got := sink.AllMetrics()[0]
	require.Equal(t, 1, got.ResourceMetrics().Len())
	_, ok := got.ResourceMetrics().At(0).Resource().Attributes().Get(schema.AttrK8sPodIp)
	assert.False(t, ok)
	assert.Equal(t, 3, got.DataPointCount())
}

// Splitting keeps every point, and each metric's kind, unit and temporality, whichever resource it lands in.
func TestSplittingKeepsEveryPoint(t *testing.T) {
	split := scrapeOnce(t, testdata(t, "metrics_ray_serve_2.4x.txt"))
	unsplit := rig(t, nil, false).Scrape(t, 1) // the rig scrapes without the factory's byNode
	require.Greater(t, split.ResourceMetrics().Len(), 1)
	assert.Equal(t, shapes(unsplit), shapes(split))
}

// shapes is, per metric name, its kind, unit, temporality and monotonicity, and its points over all resources.
func shapes(md pmetric.Metrics) map[string]string {
	points := map[string]int{}
	kinds := map[string]string{}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			for k := 0; k < sms.At(j).Metrics().Len(); k++ {
				m := sms.At(j).Metrics().At(k)
				kind := m.Type().String() + " " + m.Unit()
				switch m.Type() {
				case pmetric.MetricTypeSum:
					kind += fmt.Sprintf(" %v monotonic=%v", m.Sum().AggregationTemporality(), m.Sum().IsMonotonic())
				case pmetric.MetricTypeHistogram:
					kind += fmt.Sprintf(" %v", m.Histogram().AggregationTemporality())
				default:
				}
				kinds[m.Name()] = kind
				forEachPointAttrs(m, func(pcommon.Map) { points[m.Name()]++ })
			}
		}
	}
	out := map[string]string{}
	for name, kind := range kinds {
		out[name] = fmt.Sprintf("%s, %d points", kind, points[name])
	}
	return out
}
