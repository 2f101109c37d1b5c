package fleetsim

import "github.com/servescope/servescope/internal/schema"

// Cause is a root cause in the taxonomy of the llm_root_cause connector (the values of llm.root_cause in the
// schema); the ground truth uses exactly these names so that accuracy is a plain comparison.
type Cause int

const (
	CauseQueueSaturation Cause = iota
	CauseTenantContention
	CauseKVCachePressure
	CausePrefixCacheMiss
	CauseLongPrompt
	CauseLongGeneration
	CauseDecodeContention
	CauseGPUThrottling
	CauseCollectiveWait
	numMeasuredCauses // the causes above are measured per request; the two below are verdicts
	CauseUnknown      = numMeasuredCauses
	CauseNone         = numMeasuredCauses + 1
)

var causeNames = [...]string{
	CauseQueueSaturation:  schema.RootCauseQueueSaturation,
	CauseTenantContention: schema.RootCauseTenantContention,
	CauseKVCachePressure:  schema.RootCauseKVCachePressure,
	CausePrefixCacheMiss:  schema.RootCausePrefixCacheMiss,
	CauseLongPrompt:       schema.RootCauseLongPrompt,
	CauseLongGeneration:   schema.RootCauseLongGeneration,
	CauseDecodeContention: schema.RootCauseDecodeContention,
	CauseGPUThrottling:    schema.RootCauseGPUThrottling,
	CauseCollectiveWait:   schema.RootCauseCollectiveWait,
	CauseUnknown:          schema.RootCauseUnknown,
	CauseNone:             schema.RootCauseNone,
}

func (c Cause) String() string { return causeNames[c] }

// CauseNames lists every cause name, measured ones first.
func CauseNames() []string { return append([]string(nil), causeNames[:]...) }
