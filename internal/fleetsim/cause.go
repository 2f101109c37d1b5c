package fleetsim

// Cause is a root cause in the taxonomy of the llm_root_cause connector; the ground truth uses exactly these
// names so that accuracy is a plain comparison.
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
	CauseQueueSaturation:  "queue_saturation",
	CauseTenantContention: "tenant_contention",
	CauseKVCachePressure:  "kv_cache_pressure",
	CausePrefixCacheMiss:  "prefix_cache_miss",
	CauseLongPrompt:       "long_prompt",
	CauseLongGeneration:   "long_generation",
	CauseDecodeContention: "decode_contention",
	CauseGPUThrottling:    "gpu_throttling",
	CauseCollectiveWait:   "collective_wait",
	CauseUnknown:          "unknown",
	CauseNone:             "none",
}

func (c Cause) String() string { return causeNames[c] }

// CauseNames lists every cause name, measured ones first.
func CauseNames() []string { return append([]string(nil), causeNames[:]...) }
