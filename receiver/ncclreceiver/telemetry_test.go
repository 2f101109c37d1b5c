package ncclreceiver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/servescope/servescope/receiver/ncclreceiver/internal/metadatatest"
)

// Records read and lines that are no record are counted in the receiver's own telemetry, with its ID.
func TestSelfTelemetry(t *testing.T) {
	dir := t.TempDir()
	lines := record21(4101, 0, 0) + "\n" + "{not a record\n" + record21(4102, 1, 0) + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "node-a-pid4101.log"), []byte(lines), 0o644))
	g := newRig(t, baseConfig(filepath.Join(dir, "*.log")))
	id := attribute.NewSet(attribute.String("receiver", g.r.set.ID.String()))
	metadatatest.AssertEqualNcclRecords(t, g.tel, []metricdata.DataPoint[int64]{{Value: 2, Attributes: id}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualNcclRejectedLines(t, g.tel, []metricdata.DataPoint[int64]{{Value: 1, Attributes: id}}, metricdatatest.IgnoreTimestamp())
}
