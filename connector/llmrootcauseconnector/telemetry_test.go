package llmrootcauseconnector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/servescope/servescope/connector/llmrootcauseconnector/internal/metadatatest"
	"github.com/servescope/servescope/internal/schema"
)

type points = []metricdata.DataPoint[int64]

func one(value int64, key, v string) points {
	return points{{Value: value, Attributes: attribute.NewSet(attribute.String(key, v))}}
}

// A span held for the state after its end counts as waiting until shutdown sends it: forced, then
// explained, and counted by its cause.
func TestSelfTelemetryOfHeldSpans(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = time.Hour })
	td := batchOf(with(normal(), func(c *call) { c.replica, c.id = "r1", "held" }))
	held := int64(td.SpanCount())
	r.send(td)
	metadatatest.AssertEqualLlmRootCauseWaitingSpans(t, r.tel, points{{Value: held}}, metricdatatest.IgnoreTimestamp())
	r.shutdown()
	metadatatest.AssertEqualLlmRootCauseWaitingSpans(t, r.tel, points{{Value: 0}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualLlmRootCauseForcedSpans(t, r.tel, one(1, "reason", "shutdown"), metricdatatest.IgnoreTimestamp())
	cause, ok := r.explained()["held"][schema.AttrLLMRootCause].(string)
	require.True(t, ok, "explained at shutdown")
	metadatatest.AssertEqualLlmRootCauseRequests(t, r.tel, one(1, schema.AttrLLMRootCause, cause), metricdatatest.IgnoreTimestamp())
}

// A span outside the bounds of one request is counted by the attribute that broke them.
func TestSelfTelemetryOfRejectedSpans(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxWait = 0 })
	r.send(withDecode(batchOf(extreme("extreme")), 1e308))
	metadatatest.AssertEqualLlmRootCauseRejectedSpans(t, r.tel, one(1, "attribute", schema.AttrGenAILatencyTimeInModelDecode),
		metricdatatest.IgnoreTimestamp())
}
