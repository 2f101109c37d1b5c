package compare

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/spanfile"
)

func req(id string, queue, prefill, decode float64) spanfile.Request {
	return spanfile.Request{
		ID: id, Model: "llama", Tenant: "acme", Start: time.Unix(0, 0),
		Queue: queue, Prefill: prefill, Decode: decode, Other: 0,
		TTFT: queue + prefill, TPOT: decode / 99, E2E: queue + prefill + decode,
		PromptTokens: 1000, GenerationTokens: 100, CachedTokens: math.NaN(),
	}
}

func TestQuantilesAreRequestsThatHappened(t *testing.T) {
	q := QuantilesOf([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	assert.Equal(t, Quantiles{N: 10, P50: 5, P95: 10, P99: 10}, q)
	assert.False(t, QuantilesOf(nil).P95.Known())
}

// A queue that grew moves TTFT's p95, and the queue is named for it, with no more than the whole change.
func TestChangesNameThePhase(t *testing.T) {
	var before, after []spanfile.Request
	for i := range 100 {
		before = append(before, req(fmt.Sprint("b", i), 0.01, 0.1+float64(i%10)*0.01, 2))
		r := req(fmt.Sprint("a", i), 0.01+float64(i)*0.05, 0.1, 2)
		if i >= 50 {
			r.Slow, r.Cause = true, "queue_saturation"
		}
		after = append(after, r)
	}
	changes := Changes(Summarize(before, ByModel), Summarize(after, ByModel))
	require.NotEmpty(t, changes)
	c := changes[0]
	assert.Equal(t, TTFT, c.Metric, "TTFT moved most, and e2e by the same seconds: the tie goes to the sentence order")
	assert.Equal(t, Queue, c.Phase)
	assert.InDelta(t, float64(c.After-c.Before), float64(c.Explained), 1e-9, "prefill moved the other way: the queue explains all of it, not more")
	assert.Equal(t, "queue_saturation", c.Cause)
	assert.Contains(t, c.Sentence, "llama: p95 TTFT 200 ms -> 4.81 s; queue explains 4.61 s of it; queue_saturation 0% -> 100% of slow requests")
	for _, c := range changes {
		assert.NotEqual(t, TPOT, c.Metric, "TPOT did not move")
	}
}

// Small groups and small moves are not changes.
func TestChangesIgnoreNoise(t *testing.T) {
	var before, after, few []spanfile.Request
	for i := range 100 {
		before = append(before, req(fmt.Sprint("b", i), 0.01, 0.1, 2))
		after = append(after, req(fmt.Sprint("a", i), 0.011, 0.1, 2.05)) // +1 ms queue, +2.5% decode
	}
	assert.Empty(t, Changes(Summarize(before, ByModel), Summarize(after, ByModel)))
	for i := range MinRanked - 1 {
		few = append(few, req(fmt.Sprint("f", i), 10, 0.1, 2))
	}
	assert.Empty(t, Changes(Summarize(before[:MinRanked-1], ByModel), Summarize(few, ByModel)),
		"a group with fewer than MinRanked requests has no p95 to compare")
}

func TestGroupsInOnePeriodAreSaid(t *testing.T) {
	a := []spanfile.Request{req("a", 0.1, 0.1, 1)}
	b := []spanfile.Request{req("b", 0.1, 0.1, 1)}
	b[0].Model = "mistral"
	changes := Changes(Summarize(a, ByModel), Summarize(b, ByModel))
	require.Len(t, changes, 2)
	assert.ElementsMatch(t, []string{"mistral: new in the second period (1 requests)", "llama: not in the second period (1 requests)"},
		[]string{changes[0].Sentence, changes[1].Sentence})
}

// One request against its peers: the phase that took longest over the peers' median is named, and the
// likeness widens when too few requests are alike.
func TestCompareRequest(t *testing.T) {
	all := []spanfile.Request{}
	for i := range 10 {
		r := req(fmt.Sprint("peer", i), 0.02, 0.2, 3)
		if i >= 5 {
			r.GenerationTokens = 900 // another output size
		}
		all = append(all, r)
	}
	slow := req("slow", 4, 0.2, 3)
	slow.Slow, slow.SlowReason, slow.Cause, slow.Evidence = true, "ttft", "queue_saturation", "42 waiting at arrival"
	all = append(all, slow)

	rep, err := CompareRequest(all, "slow", "")
	require.NoError(t, err)
	assert.Equal(t, 5, rep.Peers)
	assert.Equal(t, "same model, output 64-127 tokens, prompt 512-1023 tokens", rep.Likeness)
	assert.Empty(t, rep.Widened)
	assert.Equal(t, Queue, rep.Largest)
	assert.InDelta(t, 3.98, float64(rep.Phases[0].Excess), 1e-9)
	assert.Contains(t, rep.Sentence, "queue took 4.00 s against 20 ms for the 5 requests like it")
	assert.Contains(t, rep.Sentence, "root cause queue_saturation: 42 waiting at arrival")

	all[0].Tenant = "globex" // four alike left in acme: the output size is given up first
	rep, err = CompareRequest(all, "slow", ByTenant)
	require.NoError(t, err)
	assert.Equal(t, []string{"any output"}, rep.Widened)
	assert.Equal(t, 9, rep.Peers)
	assert.Equal(t, "same model, prompt 512-1023 tokens, tenant acme", rep.Likeness)

	_, err = CompareRequest(all, "nope", "")
	assert.ErrorIs(t, err, ErrNoSuchRequest)
}

func TestBuckets(t *testing.T) {
	assert.Equal(t, "0", bucketRange(0))
	assert.Equal(t, "1-1", bucketRange(1))
	assert.Equal(t, "512-1023", bucketRange(1000))
	assert.Equal(t, "1024-2047", bucketRange(1024))
	assert.Equal(t, "0", bucketRange(math.NaN()))
}
