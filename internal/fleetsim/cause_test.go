package fleetsim

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/servescope/servescope/internal/schema"
)

// The simulator's ground truth and the connector's verdicts are compared as strings: the simulator's causes
// must be the schema's root causes, every one of them, in the schema's order (measured causes, then verdicts).
func TestCauseNamesAreTheSchemasRootCauses(t *testing.T) {
	assert.Equal(t, schema.RootCauseValues(), CauseNames())
	assert.Equal(t, schema.RootCauseUnknown, CauseUnknown.String())
	assert.Equal(t, schema.RootCauseNone, CauseNone.String())
}
