package llmrootcauseconnector

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servescope/servescope/internal/logonce"
)

// The warnings' keys come from the data (a downstream error's text), so the connector remembers a bounded
// number of them. A warning that first comes after that many others is still said once, not every time.
func TestWarnOnceStaysOncePastItsBound(t *testing.T) {
	logs, observed := observer.New(zap.WarnLevel)
	set := componenttest.NewNopTelemetrySettings()
	set.Logger = zap.New(logs)
	c, err := newCore(createDefaultConfig(), set)
	require.NoError(t, err)
	for i := range logonce.DefaultLimit {
		c.warnOnce("downstream:"+strconv.Itoa(i), "llm_root_cause could not hand data to the next component")
	}
	for range 10 {
		c.warnOnce("downstream:late", "llm_root_cause could not hand data to the next component")
	}
	assert.Equal(t, logonce.DefaultLimit+1, observed.Len())
}
