package topology

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/servescope/servescope/internal/schema"
)

func TestAtNumbersTensorParallelFastest(t *testing.T) {
	s := Sizes{TP: 2, PP: 2, DP: 2}
	want := []Position{
		{0, 0, 0, 0},
		{1, 1, 0, 0},
		{2, 0, 1, 0},
		{3, 1, 1, 0},
		{4, 0, 0, 1},
		{5, 1, 0, 1},
		{6, 0, 1, 1},
		{7, 1, 1, 1},
	}
	for r, w := range want {
		got, ok := s.At(r)
		if !ok || got != w {
			t.Errorf("At(%d) = %+v, %v; want %+v", r, got, ok, w)
		}
	}
	for _, r := range []int{-1, 8} {
		if p, ok := s.At(r); ok || p != Unknown {
			t.Errorf("At(%d) = %+v, %v; want Unknown", r, p, ok)
		}
	}
}

func TestZeroSizesMeanOne(t *testing.T) {
	s := Sizes{TP: 4}
	if s.World() != 4 {
		t.Fatalf("World = %d", s.World())
	}
	p, _ := s.At(3)
	if p.TPRank != 3 || p.PPStage != 0 || p.DPRank != 0 || p.Group("r") != "r/dp0/pp0" {
		t.Errorf("At(3) = %+v group %q", p, p.Group("r"))
	}
	if (Sizes{TP: -1}).Validate() == nil {
		t.Error("negative size accepted")
	}
}

func TestGroupsSplitStagesAndCopies(t *testing.T) {
	s := Sizes{TP: 2, PP: 2, DP: 2}
	groups := map[string][]int{}
	for r := 0; r < s.World(); r++ {
		p, _ := s.At(r)
		groups[p.Group("a:8000")] = append(groups[p.Group("a:8000")], r)
	}
	want := map[string][]int{
		"a:8000/dp0/pp0": {0, 1}, "a:8000/dp0/pp1": {2, 3},
		"a:8000/dp1/pp0": {4, 5}, "a:8000/dp1/pp1": {6, 7},
	}
	if len(groups) != len(want) {
		t.Fatalf("groups = %v", groups)
	}
	for g, ranks := range want {
		if got := groups[g]; len(got) != 2 || got[0] != ranks[0] || got[1] != ranks[1] {
			t.Errorf("group %s = %v, want %v", g, got, ranks)
		}
	}
	if (Position{Rank: -1, TPRank: 1, PPStage: -1, DPRank: 0}).Group("x") != "" {
		t.Error("a group was named without knowing the stage")
	}
}

func TestAssignOffsetsAndOverflow(t *testing.T) {
	// Node 1 of a TP=2 x PP=2 replica spread over two nodes with two GPUs each holds ranks 2 and 3: stage 1.
	got := Sizes{TP: 2, PP: 2}.Assign(2, 3)
	if got[0].PPStage != 1 || got[0].TPRank != 0 || got[1].PPStage != 1 || got[1].TPRank != 1 {
		t.Errorf("Assign(2,3) = %+v", got)
	}
	if got[2] != Unknown {
		t.Errorf("a GPU beyond the world size was placed: %+v", got[2])
	}
}

func TestFromMemberships(t *testing.T) {
	cases := map[string]struct {
		sizes Sizes
		ms    []Membership
		want  Position
	}{
		"world communicator gives everything": {
			Sizes{TP: 2, PP: 2},
			[]Membership{{NRanks: 2, Rank: 0}, {NRanks: 4, Rank: 3}},
			Position{3, 1, 1, 0},
		},
		"tensor and pipeline groups of different sizes": {
			Sizes{TP: 4, PP: 2},
			[]Membership{{NRanks: 4, Rank: 2}, {NRanks: 2, Rank: 1}},
			Position{6, 2, 1, 0},
		},
		"tensor group only, no pipeline": {
			Sizes{TP: 4},
			[]Membership{{NRanks: 4, Rank: 3, Name: "whatever"}},
			Position{3, 3, 0, 0},
		},
		"equal sizes without names stay unknown": {
			Sizes{TP: 2, PP: 2},
			[]Membership{{NRanks: 2, Rank: 1}, {NRanks: 2, Rank: 0}},
			Position{-1, -1, -1, 0},
		},
		"equal sizes told apart by name": {
			Sizes{TP: 2, PP: 2},
			[]Membership{{NRanks: 2, Rank: 1, Name: "TP Group 0"}, {NRanks: 2, Rank: 0, Name: "pp_group"}},
			Position{1, 1, 0, 0},
		},
		"a name hint inside another word does not count": {
			Sizes{TP: 2, PP: 2},
			[]Membership{{NRanks: 2, Rank: 1, Name: "httpserver"}},
			Position{-1, -1, -1, 0},
		},
		"rank out of range is ignored": {
			Sizes{TP: 2, PP: 4},
			[]Membership{{NRanks: 2, Rank: 5}},
			Position{-1, -1, -1, 0},
		},
		"single GPU": {Sizes{}, nil, Position{0, 0, 0, 0}},
	}
	for name, c := range cases {
		if got := c.sizes.FromMemberships(c.ms); got != c.want {
			t.Errorf("%s: got %+v, want %+v", name, got, c.want)
		}
	}
}

func TestPutWritesOnlyWhatIsKnown(t *testing.T) {
	m := pcommon.NewMap()
	Position{Rank: -1, TPRank: 1, PPStage: -1, DPRank: 0}.Put(m, "r")
	if v, ok := m.Get(schema.AttrLLMParallelTpRank); !ok || v.Int() != 1 {
		t.Errorf("tp rank missing: %v", m.AsRaw())
	}
	if _, ok := m.Get(schema.AttrLLMParallelPpRank); ok {
		t.Errorf("unknown stage written: %v", m.AsRaw())
	}
	if _, ok := m.Get(schema.AttrLLMParallelGroup); ok {
		t.Errorf("group written without a stage: %v", m.AsRaw())
	}
	m = pcommon.NewMap()
	Sizes{TP: 2, PP: 2}.PutSizes(m)
	if m.AsRaw()[schema.AttrLLMParallelPpSize] != int64(2) || m.AsRaw()[schema.AttrLLMParallelDpSize] != int64(1) {
		t.Errorf("sizes = %v", m.AsRaw())
	}
}
