package llmsignalsconnector

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/servescope/servescope/internal/schema"
)

// The schema's llm.incident.detector values are the detectors: every one the connector evaluates, in its
// report order (replica-wide, then the pool-wide one), each with a severity. The alert rules are generated
// from the schema's list, so a detector missing there would raise incidents no alert watches.
func TestDetectorTableIsTheSchemasDetectors(t *testing.T) {
	var names []string
	for _, d := range append(append([]detector{}, detectors...), tenantFairness) {
		names = append(names, d.name)
		assert.Contains(t, schema.IncidentSeverityValues(), d.severity(), d.name)
	}
	assert.Equal(t, schema.IncidentDetectorValues(), names)
}
