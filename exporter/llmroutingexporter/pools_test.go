package llmroutingexporter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/exporter/llmroutingexporter/internal/metadata"
	"github.com/servescope/servescope/internal/schema"
)

func scaleOf(t *testing.T, srvURL, model string) (int, map[string]any) {
	t.Helper()
	status, body := get(t, srvURL+"/v1/pools/"+model+"/scale")
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &got), body)
	return status, got
}

// A cardinality bug upstream (a request id in the model name) must not grow the exporter without bound:
// 300k distinct models leave max_pools pools, the models already served keep being served, the refused
// ones are never served, and the refusal is logged once, not once per model or batch.
func TestPoolCapHoldsWith300kModels(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	set := exportertest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	e, err := newRoutingExporter(createDefaultConfig(), set)
	require.NoError(t, err)
	e.now = func() time.Time { return now }
	srv := httptest.NewServer(e.handler())
	t.Cleanup(srv.Close)

	const models, perBatch = 300_000, 10_000
	for first := 0; first < models; first += perBatch {
		require.NoError(t, e.consume(context.Background(), poolSignals(first, perBatch, time.Second)))
	}
	assert.Equal(t, e.cfg.MaxPools, poolCount(e.state.Load()), "pools held after 300k distinct models")

	status, body := scaleOf(t, srv.URL, "model-0")
	assert.Equal(t, http.StatusOK, status, "a pool admitted before the flood is still served: %v", body)
	status, _ = scaleOf(t, srv.URL, fmt.Sprintf("model-%d", models-1))
	assert.Equal(t, http.StatusNotFound, status, "a refused pool is never served")

	full := logs.FilterMessageSnippet("max_pools").All()
	require.Len(t, full, 1, "the cap is said once: %v", logs.All())
	assert.Equal(t, int64(e.cfg.MaxPools), full[0].ContextMap()["max_pools"])
}

// A pool that nothing has been said about for pool_expiry (neither its own signal nor any replica of its
// model) is forgotten: its scale endpoint answers 404 at once, and the next batch drops it, which also makes
// room under max_pools. A pool whose replicas still report is kept, stale (503), however old its signal.
func TestStalePoolsExpire(t *testing.T) {
	e, srv := newServed(t)
	e.cfg.MaxPools = 2
	const quiet, watched = "quiet-model", "watched-model"
	require.NoError(t, e.consume(context.Background(), newBatch().withPools(quiet, watched).md))

	// Past stale, before pool_expiry: both served as stale.
	at := now.Add(e.cfg.Stale + time.Second)
	e.now = func() time.Time { return at }
	for _, m := range []string{quiet, watched} {
		status, body := scaleOf(t, srv.URL, m)
		assert.Equal(t, http.StatusServiceUnavailable, status, "%s: %v", m, body)
	}

	// Past pool_expiry, before any batch has swept them out: not served, not even as stale.
	at = now.Add(e.cfg.PoolExpiry + time.Second)
	for _, m := range []string{quiet, watched} {
		status, body := scaleOf(t, srv.URL, m)
		assert.Equal(t, http.StatusNotFound, status, "%s: %v", m, body)
	}

	// watched-model's replica reports again; quiet-model has no replica and no signal any more.
	require.NoError(t, e.consume(context.Background(), newBatch().engine("r0", "vllm", watched, -(e.cfg.PoolExpiry+time.Second),
		map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 1}).md))
	status, body := scaleOf(t, srv.URL, quiet)
	assert.Equal(t, http.StatusNotFound, status, "an expired pool is not served, not even as stale: %v", body)
	status, body = scaleOf(t, srv.URL, watched)
	assert.Equal(t, http.StatusServiceUnavailable, status, "a pool with a fresh replica is kept, its old signal served as stale: %v", body)

	// The expired pool made room: a new model is admitted at max_pools 2.
	require.NoError(t, e.consume(context.Background(), newBatch().withPoolsAt(-(e.cfg.PoolExpiry+time.Second), "new-model").md))
	status, body = scaleOf(t, srv.URL, "new-model")
	assert.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, 2, poolCount(e.state.Load()))
	_, kept := lookupPool(e.state.Load(), quiet)
	assert.False(t, kept, "the expired pool is dropped from memory, not only hidden")
}

// Copy-on-write: a batch never changes a snapshot a reader may hold, whether the batch touches the
// snapshot's pools and replicas or not.
func TestBatchLeavesEarlierSnapshotsAlone(t *testing.T) {
	e, _ := newServed(t)
	e.cfg.MaxPools = 100
	require.NoError(t, e.consume(context.Background(), poolSignals(0, 50, 0)))
	require.NoError(t, e.consume(context.Background(), fleet()))
	before := e.state.Load()
	p0, _ := lookupPool(before, "model-0")
	desired0 := p0.Desired
	r0, _ := lookupReplica(before, "vllm-a:8000")
	waiting0 := r0.Waiting

	next := newBatch().withPools("model-0", "model-new").
		engine("vllm-a:8000", "vllm", model, 0, map[string]float64{schema.MetricLLMSchedulerRequestsWaiting: 77})
	next.signal(schema.MetricLLMPoolDesiredReplicas, 9, 0, schema.AttrGenAIRequestModel, "model-0")
	require.NoError(t, e.consume(context.Background(), next.md))

	p, _ := lookupPool(before, "model-0")
	assert.Equal(t, desired0, p.Desired)
	_, has := lookupPool(before, "model-new")
	assert.False(t, has)
	assert.Equal(t, 51, poolCount(before), "50 models and the fleet's")
	r, _ := lookupReplica(before, "vllm-a:8000")
	assert.Equal(t, waiting0, r.Waiting)

	after := e.state.Load()
	p, _ = lookupPool(after, "model-0")
	assert.Equal(t, 9.0, p.Desired)
	r, _ = lookupReplica(after, "vllm-a:8000")
	assert.Equal(t, 77.0, r.Waiting)
	assert.Equal(t, 52, poolCount(after))
	for i := 1; i < 50; i++ {
		a, _ := lookupPool(after, fmt.Sprintf("model-%d", i))
		b, _ := lookupPool(before, fmt.Sprintf("model-%d", i))
		require.Same(t, b, a, "an untouched pool is shared, not copied")
	}
}

// withPools adds a fresh desired/current replica signal for each model.
func (b *batch) withPools(models ...string) *batch { return b.withPoolsAt(0, models...) }

func (b *batch) withPoolsAt(ago time.Duration, models ...string) *batch {
	for _, m := range models {
		b.signal(schema.MetricLLMPoolDesiredReplicas, 2, ago, schema.AttrGenAIRequestModel, m)
		b.signal(schema.MetricLLMPoolReplicas, 2, ago, schema.AttrGenAIRequestModel, m)
	}
	return b
}

// These read a snapshot the way the handlers do.
func poolCount(s *snapshot) int { return s.pools.Len() }

func lookupPool(s *snapshot, model string) (*pool, bool) { return s.pools.Get(model) }

func lookupReplica(s *snapshot, key string) (*replica, bool) { return s.replicas.Get(key) }

// A 4 MiB model name (a prompt pasted where the model goes) is cut before it becomes a pool: what is held
// per pool stays small, and the pool is served under the cut name.
func TestModelNamesAreCut(t *testing.T) {
	e, err := newRoutingExporter(createDefaultConfig(), exportertest.NewNopSettings(metadata.Type))
	require.NoError(t, err)
	e.now = func() time.Time { return now }
	huge := strings.Repeat("m", 4<<20)
	b := newBatch()
	b.signal(schema.MetricLLMPoolDesiredReplicas, 2, time.Second, schema.AttrGenAIRequestModel, huge)
	require.NoError(t, e.consume(context.Background(), b.md))
	require.Equal(t, 1, poolCount(e.state.Load()))
	_, ok := lookupPool(e.state.Load(), huge[:maxNameLength])
	assert.True(t, ok, "held under its first %d bytes", maxNameLength)
}
