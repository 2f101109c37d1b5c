package llmroutingexporter

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/exporter/llmroutingexporter/internal/metadata"
	"github.com/servescope/servescope/internal/configtest"
	"github.com/servescope/servescope/internal/promtext"
	"github.com/servescope/servescope/internal/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files (review them by eye before committing)")

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// batch builds metrics as the pipeline delivers them: engine gauges on the replica's resource (after
// llm_normalize), and llm_signals' scores with the replica on the data point.
type batch struct{ md pmetric.Metrics }

func newBatch() *batch { return &batch{md: pmetric.NewMetrics()} }

func (b *batch) engine(replica, engine, model string, ago time.Duration, values map[string]float64) *batch {
	rm := b.md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr(schema.AttrServiceInstanceID, replica)
	rm.Resource().Attributes().PutStr(schema.AttrLLMEngineName, engine)
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for _, name := range sortedKeys(values) {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(-ago)))
		dp.SetDoubleValue(values[name])
		dp.Attributes().PutStr(schema.AttrGenAIRequestModel, model)
	}
	return b
}

func (b *batch) signal(name string, value float64, ago time.Duration, attrs ...string) {
	ms := b.md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	m := ms.AppendEmpty()
	m.SetName(name)
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(-ago)))
	dp.SetDoubleValue(value)
	for i := 0; i+1 < len(attrs); i += 2 {
		dp.Attributes().PutStr(attrs[i], attrs[i+1])
	}
}

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const model = "meta-llama/Llama-3.1-70B-Instruct"

// fleet: a calm vLLM replica, a busy SGLang one, a TensorRT-LLM one with block data, and a llama.cpp one whose
// telemetry stopped a minute ago (it looked perfect then).
func fleet() pmetric.Metrics {
	b := newBatch().
		engine("vllm-a:8000", "vllm", model, time.Second, map[string]float64{
			schema.MetricLLMSchedulerRequestsWaiting: 0,
			schema.MetricLLMSchedulerRequestsRunning: 12, schema.MetricLLMKVCacheUtilization: 0.31,
		}).
		engine("sglang-b:30000", "sglang", model, 2*time.Second, map[string]float64{
			schema.MetricLLMSchedulerRequestsWaiting: 9,
			schema.MetricLLMSchedulerRequestsRunning: 48, schema.MetricLLMKVCacheUtilization: 0.94,
		}).
		engine("trtllm-c:8000", "tensorrt_llm", model, time.Second, map[string]float64{
			schema.MetricLLMSchedulerRequestsWaiting: 2,
			schema.MetricLLMSchedulerRequestsRunning: 30, schema.MetricLLMKVCacheUtilization: 0.6,
			schema.MetricLLMKVCacheBlockSize: 32, schema.MetricLLMKVCacheBlocksTotal: 4096,
		}).
		engine("llamacpp-d:8080", "llama_cpp", model, time.Minute, map[string]float64{
			schema.MetricLLMSchedulerRequestsWaiting: 0,
			schema.MetricLLMSchedulerRequestsRunning: 0, schema.MetricLLMKVCacheUtilization: 0.01,
		})
	for _, s := range []struct {
		replica         string
		health, routing float64
		best            float64
	}{{"vllm-a:8000", 0.95, 0.62, 1}, {"sglang-b:30000", 0.2, 0.03, 0}, {"trtllm-c:8000", 0.7, 0.26, 0}, {"llamacpp-d:8080", 1, 0.99, 0}} {
		ago := 2 * time.Second
		if s.replica == "llamacpp-d:8080" {
			ago = time.Minute
		}
		b.signal(schema.MetricLLMReplicaHealthScore, s.health, ago, schema.AttrGenAIRequestModel, model, schema.AttrServiceInstanceID, s.replica)
		b.signal(schema.MetricLLMReplicaHealthComponent, s.health, ago, schema.AttrLLMHealthComponent, "queue", schema.AttrGenAIRequestModel, model, schema.AttrServiceInstanceID, s.replica)
		b.signal(schema.MetricLLMReplicaRoutingScore, s.routing, ago, schema.AttrGenAIRequestModel, model, schema.AttrServiceInstanceID, s.replica)
		b.signal(schema.MetricLLMReplicaRoutingRecommended, s.best, ago, schema.AttrGenAIRequestModel, model, schema.AttrServiceInstanceID, s.replica)
	}
	b.signal(schema.MetricLLMPoolDesiredReplicas, 5, 2*time.Second, schema.AttrGenAIRequestModel, model)
	for reason, current := range map[string]float64{"queue": 1, "kv_cache": 0, "low_load": 0, "steady": 0} {
		b.signal(schema.MetricLLMPoolScaleReason, current, 2*time.Second, schema.AttrGenAIRequestModel, model, schema.AttrLLMScaleReason, reason)
	}
	b.signal(schema.MetricLLMPoolReplicas, 3, 2*time.Second, schema.AttrGenAIRequestModel, model)
	b.signal(schema.MetricLLMPoolForecastReplicas, 7, 2*time.Second, schema.AttrGenAIRequestModel, model)
	b.signal(schema.MetricLLMPoolSaturationEta, 95, 2*time.Second, schema.AttrGenAIRequestModel, model)
	return b.md
}

func newServed(t *testing.T) (*routingExporter, *httptest.Server) {
	cfg := createDefaultConfig()
	require.NoError(t, cfg.Validate())
	e, err := newRoutingExporter(cfg, exportertest.NewNopSettings(metadata.Type))
	require.NoError(t, err)
	e.now = func() time.Time { return now }
	srv := httptest.NewServer(e.handler())
	t.Cleanup(srv.Close)
	return e, srv
}

func get(t *testing.T, url string) (int, string) {
	status, body, err := fetch(url)
	require.NoError(t, err)
	return status, body
}

// fetch is get for goroutines other than the test's, which must not end the test themselves (require).
func fetch(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func golden(t *testing.T, name, got string) {
	path := filepath.Join("testdata", "golden", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update once, review the file, commit it")
	assert.Equal(t, string(want), got, name)
}

func TestEndpoints(t *testing.T) {
	e, srv := newServed(t)
	require.NoError(t, e.consume(context.Background(), fleet()))
	escaped := "meta-llama%2FLlama-3.1-70B-Instruct"
	for _, c := range []struct {
		name, path string
		status     int
	}{
		{"replicas.json", "/v1/replicas", 200},
		{"recommendation.json", "/v1/pools/" + model + "/recommendation", 200},
		{"recommendation-escaped.json", "/v1/pools/" + escaped + "/recommendation", 200},
		{"scale.json", "/v1/pools/" + model + "/scale", 200},
		{"model-server-trtllm.txt", "/model-server/trtllm-c:8000/metrics", 200},
		{"model-server-stale.txt", "/model-server/llamacpp-d:8080/metrics", 503},
		{"unknown-model.json", "/v1/pools/unknown/recommendation", 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := get(t, srv.URL+c.path)
			assert.Equal(t, c.status, status, body)
			golden(t, c.name, body)
		})
	}
}

func TestStaleTelemetryIsNeverServedAsFresh(t *testing.T) {
	e, srv := newServed(t)
	require.NoError(t, e.consume(context.Background(), fleet()))
	_, body := get(t, srv.URL+"/v1/replicas")
	var got struct{ Replicas []view }
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	byName := map[string]view{}
	for _, r := range got.Replicas {
		byName[r.Replica] = r
	}
	stale := byName["llamacpp-d:8080"]
	assert.True(t, stale.Stale)
	assert.False(t, stale.Healthy)
	assert.Equal(t, 0.0, *stale.RoutingScore, "its last score was 0.99; stale counts as unroutable")
	assert.Equal(t, 60.0, *stale.TelemetryAge)
	assert.True(t, byName["vllm-a:8000"].Healthy)

	_, body = get(t, srv.URL+"/v1/pools/"+model+"/recommendation")
	var rec struct{ Replica string }
	require.NoError(t, json.Unmarshal([]byte(body), &rec))
	assert.Equal(t, "vllm-a:8000", rec.Replica, "low queue and free KV beat a full one; the stale perfect one is out")

	// The scaling signal ages out too: KEDA must not act on it.
	e.now = func() time.Time { return now.Add(time.Minute) }
	status, body := get(t, srv.URL+"/v1/pools/"+model+"/scale")
	assert.Equal(t, http.StatusServiceUnavailable, status, body)
	assert.Contains(t, body, "stale")
}

// What an endpoint picker reads: the model-server protocol's names, for a replica that is not vLLM.
func TestModelServerProtocolParses(t *testing.T) {
	e, srv := newServed(t)
	require.NoError(t, e.consume(context.Background(), fleet()))
	for replica, want := range map[string]map[string]float64{
		"sglang-b:30000": {"vllm:num_requests_waiting": 9, "vllm:num_requests_running": 48, "vllm:kv_cache_usage_perc": 0.94},
		"trtllm-c:8000":  {"vllm:num_requests_waiting": 2, "vllm:num_requests_running": 30, "vllm:kv_cache_usage_perc": 0.6, "vllm:cache_config_info": 1},
	} {
		status, body := get(t, srv.URL+"/model-server/"+replica+"/metrics")
		require.Equal(t, http.StatusOK, status)
		parsed := promtext.Parse([]byte(body))
		assert.Zero(t, parsed.ErrorCount, body)
		got := map[string]float64{}
		for _, f := range parsed.Families {
			require.Len(t, f.Samples, 1, f.Name)
			got[f.Name] = f.Samples[0].Value
			labels := map[string]string{}
			for _, l := range f.Samples[0].Labels {
				labels[l.Name] = l.Value
			}
			if f.Name == "vllm:cache_config_info" {
				assert.Equal(t, map[string]string{"block_size": "32", "num_gpu_blocks": "4096"}, labels)
			} else {
				assert.Equal(t, model, labels["model_name"])
			}
		}
		assert.Equal(t, want, got, replica)
	}
}

// Readers never see half a batch: each batch sets waiting and running, and a pool's desired and current
// replicas, to the same number.
func TestConcurrentReadersSeeWholeBatches(t *testing.T) {
	e, srv := newServed(t)
	e.now = func() time.Time { return now }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, body, err := fetch(srv.URL + "/v1/replicas")
				if !assert.NoError(t, err) {
					return
				}
				var got struct{ Replicas []view }
				if !assert.NoError(t, json.Unmarshal([]byte(body), &got)) {
					return
				}
				for _, rep := range got.Replicas {
					if rep.Waiting != nil && rep.Running != nil {
						assert.Equal(t, *rep.Waiting, *rep.Running, "a torn read")
					}
				}
				status, body, err := fetch(srv.URL + "/v1/pools/" + model + "/scale")
				if !assert.NoError(t, err) {
					return
				}
				if status == http.StatusOK {
					var scale struct{ DesiredReplicas, CurrentReplicas float64 }
					if assert.NoError(t, json.Unmarshal([]byte(body), &scale)) {
						assert.Equal(t, scale.DesiredReplicas, scale.CurrentReplicas, "a torn read of a pool")
					}
				}
			}
		}()
	}
	for i := 0; i < 300; i++ {
		v := float64(i)
		b := newBatch()
		for r := 0; r < 5; r++ {
			b.engine(fmt.Sprintf("r%d", r), "vllm", model, 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: v, schema.MetricLLMSchedulerRequestsRunning: v})
		}
		b.signal(schema.MetricLLMPoolDesiredReplicas, v, 0, schema.AttrGenAIRequestModel, model)
		b.signal(schema.MetricLLMPoolReplicas, v, 0, schema.AttrGenAIRequestModel, model)
		require.NoError(t, e.consume(context.Background(), b.md))
	}
	close(stop)
	wg.Wait()
}

func TestBoundedReplicas(t *testing.T) {
	e, _ := newServed(t)
	e.cfg.MaxReplicas = 3
	for i := 0; i < 10; i++ {
		b := newBatch().engine(fmt.Sprintf("r%d", i), "vllm", model, time.Duration(10-i)*time.Second, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 1})
		require.NoError(t, e.consume(context.Background(), b.md))
	}
	s := e.state.Load()
	assert.Equal(t, 3, s.replicas.Len())
	_, kept := s.replicas.Get("r9")
	assert.True(t, kept)
}

func TestLifecycleAndConfig(t *testing.T) {
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.NetAddr.Endpoint = "127.0.0.1:0"
	exp, err := f.CreateMetrics(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, exp.ConsumeMetrics(context.Background(), fleet()))
	require.NoError(t, exp.Shutdown(context.Background()))

	configtest.Sections(t, filepath.Join("testdata", "config.yaml"), createDefaultConfig,
		map[string]string{
			"llm_routing": "", "llm_routing/custom": "", "llm_routing/bad": "stale: must be positive",
			"llm_routing/no_pools": "max_pools: must be at least 1", "llm_routing/short_expiry": "pool_expiry: must be at least stale (1m0s)",
		})
}

// A serving system's frontend tier (Dynamo's) carries its model's block size and block count, but it is the
// pool's router, not a replica an endpoint picker could choose: it is not listed; the workers are.
func TestFrontendTierIsNoReplica(t *testing.T) {
	e, srv := newServed(t)
	md := newBatch().
		engine("dynamo-frontend:8000", "dynamo", model, time.Second, map[string]float64{
			schema.MetricLLMSchedulerRequestsMaxRunning: 256, schema.MetricLLMKVCacheBlockSize: 16, schema.MetricLLMKVCacheBlocksTotal: 12307,
		}).
		engine("dynamo-worker-0:8081", "dynamo", model, time.Second, map[string]float64{
			schema.MetricLLMSchedulerRequestsWaiting: 0, schema.MetricLLMSchedulerRequestsRunning: 5,
			schema.MetricLLMKVCacheUtilization: 0.29, schema.MetricLLMKVCacheBlockSize: 16, schema.MetricLLMKVCacheBlocksTotal: 12307,
		}).md
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr(schema.AttrLLMServeTier, schema.ServeTierFrontend)
	// The worker's runtime says its block count beside its engine's (the same pool, the same engine core).
	blocks := md.ResourceMetrics().At(1).ScopeMetrics().At(0).Metrics()
	for i := 0; i < blocks.Len(); i++ {
		if blocks.At(i).Name() == schema.MetricLLMKVCacheBlocksTotal {
			dps := blocks.At(i).Gauge().DataPoints()
			dps.At(0).Attributes().PutStr(schema.AttrLLMEngineIndex, "0")
			again := dps.AppendEmpty()
			dps.At(0).CopyTo(again)
			again.Attributes().PutStr("dynamo_component", "backend")
		}
	}
	require.NoError(t, e.consume(context.Background(), md))
	status, body := get(t, srv.URL+"/v1/replicas")
	require.Equal(t, http.StatusOK, status)
	assert.NotContains(t, body, "dynamo-frontend")
	assert.Contains(t, body, "dynamo-worker-0:8081")
	_, page := get(t, srv.URL+"/model-server/dynamo-worker-0:8081/metrics")
	assert.Contains(t, page, `block_size="16",num_gpu_blocks="12307"`)
}
