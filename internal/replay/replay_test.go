package replay

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/servescope/servescope/internal/spanfile"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func recorded(id, family string, at time.Duration, prompt, cached, out float64) spanfile.Request {
	return spanfile.Request{
		ID: id, Model: "llama", Tenant: "acme", Family: family, Start: t0.Add(at),
		PromptTokens: prompt, CachedTokens: cached, GenerationTokens: out, TTFT: 0.1, TPOT: 0.02, E2E: 2,
	}
}

func TestWorkloadFromRequests(t *testing.T) {
	wl, skipped := FromRequests([]spanfile.Request{
		recorded("b", "support", 2*time.Second, 1500, 1024, 100),
		recorded("a", "support", 0, 1200, 1000, 50),
		recorded("c", "support", 3*time.Second, 800, 1200, 10), // its prompt is shorter than the prefix
		recorded("d", "", 4*time.Second, 300, 200, 10),         // no family: nothing shared
		recorded("e", "support", 5*time.Second, math.NaN(), 0, 10),
	})
	assert.Equal(t, 1, skipped, "a request without its prompt length cannot be replayed")
	require.Len(t, wl, 4)
	assert.Equal(t, []string{"a", "b", "c", "d"}, []string{wl[0].ID, wl[1].ID, wl[2].ID, wl[3].ID}, "arrival order")
	assert.Equal(t, []time.Duration{0, 2 * time.Second, 3 * time.Second, 4 * time.Second}, []time.Duration{wl[0].At, wl[1].At, wl[2].At, wl[3].At})
	assert.Equal(t, 1024, wl[0].PrefixTokens, "the median of the family's cached tokens (1000, 1024, 1200, 0)")
	assert.Equal(t, 800, wl[2].PrefixTokens)
	assert.Equal(t, 0, wl[3].PrefixTokens)
	assert.Equal(t, time.Second, wl.Scaled(2)[1].At)
}

func TestPromptsShareTheFamilysPrefix(t *testing.T) {
	a := Request{ID: "a", Family: "support", PromptTokens: 300, PrefixTokens: 200}
	b := Request{ID: "b", Family: "support", PromptTokens: 250, PrefixTokens: 200}
	other := Request{ID: "c", Family: "code", PromptTokens: 300, PrefixTokens: 200}
	pa, pb, po := strings.Fields(Prompt(a, 0)), strings.Fields(Prompt(b, 1)), strings.Fields(Prompt(other, 2))
	assert.Len(t, pa, 300, "one word a token")
	assert.Len(t, pb, 250)
	assert.Equal(t, pa[:200], pb[:200], "the family's prefix is the same text")
	assert.NotEqual(t, pa[200:250], pb[200:250], "the rest is each request's own")
	assert.NotEqual(t, pa[:200], po[:200], "another family's prefix differs")
	again := Prompt(a, 0)
	assert.Equal(t, strings.Join(pa, " "), again, "the same text every replay")
}

func TestMooncakeRoundTrip(t *testing.T) {
	wl := Workload{
		{At: 0, ID: "a", Family: "support", PromptTokens: 1500, PrefixTokens: 1100, OutputTokens: 50},
		{At: 1500 * time.Millisecond, ID: "b", Family: "support", PromptTokens: 1300, PrefixTokens: 1100, OutputTokens: 20},
		{At: 2 * time.Second, ID: "c", Family: "code", PromptTokens: 600, PrefixTokens: 520, OutputTokens: 300},
		{At: 3 * time.Second, ID: "d", PromptTokens: 700, OutputTokens: 9},
	}
	var buf bytes.Buffer
	require.NoError(t, WriteMooncake(&buf, wl))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 4)
	assert.Equal(t, `{"timestamp":0,"input_length":1500,"output_length":50,"hash_ids":[0,1,2]}`, lines[0], "two shared blocks, one of its own")
	assert.Equal(t, `{"timestamp":1500,"input_length":1300,"output_length":20,"hash_ids":[0,1,3]}`, lines[1])
	assert.Equal(t, `{"timestamp":2000,"input_length":600,"output_length":300,"hash_ids":[4,5]}`, lines[2])

	back, err := ReadMooncake(&buf, "llama")
	require.NoError(t, err)
	require.Len(t, back, 4)
	for i, r := range back {
		assert.Equal(t, wl[i].At, r.At)
		assert.Equal(t, wl[i].PromptTokens, r.PromptTokens)
		assert.Equal(t, wl[i].OutputTokens, r.OutputTokens)
		assert.Equal(t, "llama", r.Model)
	}
	assert.Equal(t, back[0].Family, back[1].Family)
	assert.Equal(t, 1024, back[0].PrefixTokens, "whole shared blocks")
	assert.Equal(t, 1024, back[1].PrefixTokens)
	assert.Empty(t, back[2].Family, "alone in its family: shares nothing")
	assert.Zero(t, back[3].PrefixTokens)

	_, err = ReadMooncake(strings.NewReader("{\"timestamp\":0,\"input_length\":5,\"output_length\":1}\nnot json\n"), "m")
	assert.ErrorContains(t, err, "line 2: not a Mooncake trace line")
	_, err = ReadMooncake(strings.NewReader("{\"timestamp\":0,\"input_length\":0,\"output_length\":1}\n"), "m")
	assert.ErrorContains(t, err, "line 1: want")
}
