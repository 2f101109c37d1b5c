package replay

import (
	"hash/fnv"
	"math/rand/v2"
	"strings"
)

// words are short, common English words: each is one token, with its leading space, in the BPE
// vocabularies of Llama, Qwen, Mistral and GPT models, so a prompt of n of them is about n tokens. A
// tokenizer is not bundled: the lengths a replay sends are close to, not exactly, the recorded ones.
var words = strings.Fields(`the of and to in is it that was for on are as with his they at be this from
have or by one had not but what all were when we there can an your which their said if do will each about
how up out them then she many some so these would other into has more her two like him see time could no
make than first been its who now people my made over did down only way find use may water long little very
after words called just where most know get through back much go good new write our me man too any day
same right look think also around another came come work three word must because does part even place well`)

// Prompt is a request's synthetic prompt: the first PrefixTokens words are the family's (the same for
// every request of the family, so a prefix cache serves them as it served the recorded ones), the rest the
// request's own (seeded by its index, so a replay sends the same text each time).
func Prompt(r Request, index int) string {
	var b strings.Builder
	b.Grow(r.PromptTokens * 6)
	family := rand.New(rand.NewPCG(seedOf(r.Family), 1))
	own := rand.New(rand.NewPCG(seedOf(r.ID), uint64(index)))
	for i := range r.PromptTokens {
		rng := own
		if i < r.PrefixTokens {
			rng = family
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

func seedOf(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}
