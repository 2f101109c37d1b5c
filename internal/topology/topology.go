// Package topology places a GPU or a process of a model-parallel replica in its parallel layout: which
// tensor-parallel rank, pipeline stage and data-parallel copy it is, and which tensor-parallel group it
// belongs to. Detectors use this to compare like with like: the tensor-parallel ranks of one group with each
// other, the stages of one pipeline with each other.
//
// Everything here is arithmetic on the replica's sizes and rank numbers, with no I/O, so the nvml and nccl
// receivers (and anything else that knows a rank) reach the same answer for the same GPU.
package topology

import (
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/servescope/servescope/internal/schema"
)

// Sizes is a replica's parallel layout. Zero means 1 (not parallel along that dimension).
type Sizes struct {
	TP, PP, DP int
}

// Normalized returns the sizes with every zero replaced by 1.
func (s Sizes) Normalized() Sizes {
	one := func(n int) int {
		if n == 0 {
			return 1
		}
		return n
	}
	return Sizes{TP: one(s.TP), PP: one(s.PP), DP: one(s.DP)}
}

// World is the number of ranks (GPUs) of the replica.
func (s Sizes) World() int {
	n := s.Normalized()
	return n.TP * n.PP * n.DP
}

// Validate rejects negative sizes.
func (s Sizes) Validate() error {
	if s.TP < 0 || s.PP < 0 || s.DP < 0 {
		return fmt.Errorf("parallel sizes must not be negative (tensor %d, pipeline %d, data %d)", s.TP, s.PP, s.DP)
	}
	return nil
}

// Position is where one rank sits. -1 marks a coordinate that could not be derived.
type Position struct {
	Rank    int // global rank within the replica
	TPRank  int
	PPStage int
	DPRank  int
}

// Unknown is a position of which nothing is known.
var Unknown = Position{Rank: -1, TPRank: -1, PPStage: -1, DPRank: -1}

// At returns the position of global rank r. Ranks are numbered tensor-parallel fastest, then pipeline stage,
// then data-parallel copy (rank = (dp*PP + pp)*TP + tp), which is how vLLM, SGLang and Megatron-style
// launchers lay out their groups, so that a tensor-parallel group occupies adjacent GPUs (one NVLink island).
func (s Sizes) At(r int) (Position, bool) {
	n := s.Normalized()
	if r < 0 || r >= s.World() {
		return Unknown, false
	}
	return Position{Rank: r, TPRank: r % n.TP, PPStage: (r / n.TP) % n.PP, DPRank: r / (n.TP * n.PP)}, true
}

// Known reports whether the position says anything at all.
func (p Position) Known() bool { return p.TPRank >= 0 || p.PPStage >= 0 }

// Group names the tensor-parallel group: the ranks of one pipeline stage of one data-parallel copy, which
// execute every collective of that stage together. Empty when the stage or the copy is unknown.
func (p Position) Group(replica string) string {
	if p.PPStage < 0 || p.DPRank < 0 {
		return ""
	}
	return replica + "/dp" + strconv.Itoa(p.DPRank) + "/pp" + strconv.Itoa(p.PPStage)
}

// Put writes the known coordinates and the group onto attrs.
func (p Position) Put(attrs pcommon.Map, replica string) {
	if p.TPRank >= 0 {
		attrs.PutInt(schema.AttrLLMParallelTpRank, int64(p.TPRank))
	}
	if p.PPStage >= 0 {
		attrs.PutInt(schema.AttrLLMParallelPpRank, int64(p.PPStage))
	}
	if g := p.Group(replica); g != "" {
		attrs.PutStr(schema.AttrLLMParallelGroup, g)
	}
}

// PutSizes writes the replica's layout (resource attributes).
func (s Sizes) PutSizes(attrs pcommon.Map) {
	n := s.Normalized()
	attrs.PutInt(schema.AttrLLMParallelTpSize, int64(n.TP))
	attrs.PutInt(schema.AttrLLMParallelPpSize, int64(n.PP))
	attrs.PutInt(schema.AttrLLMParallelDpSize, int64(n.DP))
}

// Assign places count GPUs listed in rank order, the first holding global rank first: on one node that is
// the replica's GPUs by index (the order CUDA_VISIBLE_DEVICES normally lists them in); on node k of a
// multi-node replica with count GPUs per node, first = k*count. GPUs beyond the world size are Unknown.
func (s Sizes) Assign(first, count int) []Position {
	out := make([]Position, count)
	for i := range out {
		out[i], _ = s.At(first + i)
	}
	return out
}

// Membership is one NCCL communicator a process belongs to: its size, the process' rank in it and, where
// NCCL reports one, its name.
type Membership struct {
	NRanks, Rank int
	Name         string
}

// FromMemberships derives a process' position from the communicators it belongs to. A communicator
// spanning the whole replica gives the global rank outright. Otherwise a communicator whose size matches
// exactly one parallel dimension gives the rank along that dimension (the tensor-parallel group's rank is
// the tp rank, the pipeline group's is the stage); where two dimensions have the same size the
// communicator's name must say which it is (tp/tensor, pp/pipeline, dp/data), or that dimension stays
// unknown rather than guessed.
func (s Sizes) FromMemberships(ms []Membership) Position {
	n := s.Normalized()
	world := s.World()
	if world == 1 {
		p, _ := s.At(0)
		return p
	}
	for _, m := range ms {
		if m.NRanks == world {
			if p, ok := s.At(m.Rank); ok {
				return p
			}
		}
	}
	p := Unknown
	dims := []struct {
		size  int
		hints []string
		set   func(int)
	}{
		{n.TP, []string{"tp", "tensor"}, func(r int) { p.TPRank = r }},
		{n.PP, []string{"pp", "pipeline"}, func(r int) { p.PPStage = r }},
		{n.DP, []string{"dp", "data"}, func(r int) { p.DPRank = r }},
	}
	for i, d := range dims {
		if d.size == 1 {
			d.set(0)
			continue
		}
		ambiguous := false
		for j, other := range dims {
			if j != i && other.size == d.size {
				ambiguous = true
			}
		}
		for _, m := range ms {
			if m.NRanks != d.size || m.Rank < 0 || m.Rank >= d.size {
				continue
			}
			if ambiguous && !namedFor(m.Name, d.hints) {
				continue
			}
			d.set(m.Rank)
			break
		}
	}
	if p.TPRank >= 0 && p.PPStage >= 0 && p.DPRank >= 0 {
		p.Rank = (p.DPRank*n.PP+p.PPStage)*n.TP + p.TPRank
	}
	return p
}

// namedFor reports whether a communicator name mentions one of the hints as a word of its own ("tp_group",
// "TP Group 0", "pipeline-1"), so that "dp" is not found inside another word.
func namedFor(name string, hints []string) bool {
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	})
	for _, w := range words {
		w = strings.TrimRight(w, "0123456789")
		for _, h := range hints {
			if w == h {
				return true
			}
		}
	}
	return false
}
