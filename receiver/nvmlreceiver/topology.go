package nvmlreceiver

import (
	"sort"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/internal/topology"
)

// forgetAfter is how many scrapes a GPU stays a member of its replica without being attributed to it: a
// GPU whose engine process is briefly missing from NVML's list must not shift every other GPU's rank.
const forgetAfter = 30

// member is a GPU last attributed to a replica.
type member struct {
	index int
	seen  uint64 // scrape number
}

// place puts each attributed GPU in its replica's parallel layout: tensor-parallel rank, pipeline stage and
// group on the GPU's resource, next to service.instance.id. A replica's GPUs take ranks first_rank,
// first_rank+1, ... in the order of the rule's gpus list, or by GPU index without one (the order in which
// engines hand ranks to the devices CUDA_VISIBLE_DEVICES lists, which is ascending unless set otherwise).
func (s *gpuScraper) place(md pmetric.Metrics) {
	s.scrapes++
	byReplica := map[string][]pmetric.ResourceMetrics{}
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		rm := md.ResourceMetrics().At(i)
		attrs := rm.Resource().Attributes()
		inst, ok := attrs.Get(schema.AttrServiceInstanceID)
		if !ok {
			continue
		}
		rule := s.layoutRule(inst.Str())
		if rule == nil {
			continue
		}
		uuid, _ := attrs.Get(schema.AttrHwID)
		index, _ := attrs.Get(schema.AttrNvidiaGPUIndex)
		if s.members[inst.Str()] == nil {
			s.members[inst.Str()] = map[string]*member{}
		}
		s.members[inst.Str()][uuid.Str()] = &member{index: int(index.Int()), seen: s.scrapes}
		byReplica[inst.Str()] = append(byReplica[inst.Str()], rm)
	}
	for inst, rms := range byReplica {
		rule := s.layoutRule(inst)
		order := s.rankOrder(inst, rule)
		for _, rm := range rms {
			attrs := rm.Resource().Attributes()
			index, _ := attrs.Get(schema.AttrNvidiaGPUIndex)
			rank, ok := order[int(index.Int())]
			if !ok {
				continue
			}
			pos, ok := rule.sizes().At(rule.FirstRank + rank)
			if !ok {
				continue
			}
			pos.Put(attrs, inst)
			rule.sizes().PutSizes(attrs)
		}
	}
}

// layoutRule returns the first rule for the replica that gives a parallel layout.
func (s *gpuScraper) layoutRule(inst string) *ReplicaRule {
	for i := range s.cfg.Replicas {
		r := &s.cfg.Replicas[i]
		if r.ServiceInstanceID == inst && r.hasLayout() {
			return r
		}
	}
	return nil
}

// rankOrder maps GPU index to the GPU's position among the replica's GPUs on this node.
func (s *gpuScraper) rankOrder(inst string, rule *ReplicaRule) map[int]int {
	order := map[int]int{}
	if len(rule.GPUs) > 0 {
		for pos, index := range rule.GPUs {
			order[index] = pos
		}
		return order
	}
	var indexes []int
	for uuid, m := range s.members[inst] {
		if s.scrapes-m.seen > forgetAfter {
			delete(s.members[inst], uuid)
			continue
		}
		indexes = append(indexes, m.index)
	}
	sort.Ints(indexes)
	for pos, index := range indexes {
		order[index] = pos
	}
	return order
}

func (r *ReplicaRule) sizes() topology.Sizes {
	return topology.Sizes{TP: r.TensorParallelSize, PP: r.PipelineParallelSize, DP: r.DataParallelSize}
}

func (r *ReplicaRule) hasLayout() bool {
	return r.TensorParallelSize > 0 || r.PipelineParallelSize > 0 || r.DataParallelSize > 0
}
