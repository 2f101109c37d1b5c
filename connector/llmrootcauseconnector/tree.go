package llmrootcauseconnector

import (
	"math"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/schema"
)

// An engine whose request is a tree of spans (SGLang: the request span, a thread span under it per process
// thread and tensor-parallel rank, the stage slices under those, nested where one slice is opened around
// others) is explained once, on its request span, with the phases its slices say. The slices of one request
// come from several processes, each exporting on its own, so they arrive in several batches: they are
// indexed as they come, and the request span waits for them (within max_wait, like the wait for state).
//
// A phase is the union of the time its slices cover, not their sum: a slice nested in another of the same
// phase (decode_loop in decode_forward, chunked_prefill in prefill_forward) adds nothing, flat consecutive
// slices (the early releases' decode_loop per step) add up, and the two sides of a KV transfer overlapping in
// time count once. Of several ranks with the same thread label, the lowest rank's slices are read: the ranks
// run the same request in lockstep. Where phases overlap, decode wins over prefill and prefill over queue,
// so the phases never add up to more than the request.

const (
	phaseQueue = iota
	phasePrefill
	phaseDecode
	phaseCount
)

func phaseIndex(phase string) int {
	switch phase {
	case schema.PhaseQueue:
		return phaseQueue
	case schema.PhasePrefill:
		return phasePrefill
	case schema.PhaseDecode:
		return phaseDecode
	}
	return -1
}

// Bounds of the index: what one trace may hold, and how far up a slice's ancestry is followed.
const (
	maxIntervals  = 64   // per phase of one group; beyond, the closest two merge (the gap between them is lost)
	maxTreeGroups = 1024 // per trace: slice parents (thread spans, enclosing slices) and request parts
	maxTreeDepth  = 16
)

type interval struct{ from, to int64 } // unix ns

// intervalSet is a union of intervals: sorted, disjoint, not touching.
type intervalSet []interval

func (s intervalSet) add(iv interval) intervalSet {
	if iv.to < iv.from {
		return s
	}
	out := make(intervalSet, 0, len(s)+1)
	placed := false
	for _, cur := range s {
		switch {
		case cur.to < iv.from:
			out = append(out, cur)
		case iv.to < cur.from:
			if !placed {
				out = append(out, iv)
				placed = true
			}
			out = append(out, cur)
		default: // overlapping or touching: merge into iv
			iv.from, iv.to = min(iv.from, cur.from), max(iv.to, cur.to)
		}
	}
	if !placed {
		out = append(out, iv)
	}
	for len(out) > maxIntervals {
		closest := 0
		for i := 1; i < len(out)-1; i++ {
			if out[i+1].from-out[i].to < out[closest+1].from-out[closest].to {
				closest = i
			}
		}
		out[closest].to = out[closest+1].to
		out = append(out[:closest+1], out[closest+2:]...)
	}
	return out
}

func (s intervalSet) union(o intervalSet) intervalSet {
	for _, iv := range o {
		s = s.add(iv)
	}
	return s
}

// minus is s without the time o covers.
func (s intervalSet) minus(o intervalSet) intervalSet {
	var out intervalSet
	for _, iv := range s {
		pieces := []interval{iv}
		for _, cut := range o {
			var next []interval
			for _, p := range pieces {
				if cut.to <= p.from || cut.from >= p.to {
					next = append(next, p)
					continue
				}
				if p.from < cut.from {
					next = append(next, interval{p.from, cut.from})
				}
				if cut.to < p.to {
					next = append(next, interval{cut.to, p.to})
				}
			}
			pieces = next
		}
		out = append(out, pieces...)
	}
	return out
}

func (s intervalSet) seconds() float64 {
	var ns int64
	for _, iv := range s {
		ns += iv.to - iv.from
	}
	return float64(ns) / 1e9
}

// sliceGroup is what is known under one span of a request tree: the slices whose parent it is, by phase,
// and, once the span itself has been seen, its own parent and (for a thread span) its label and rank.
type sliceGroup struct {
	up     pcommon.SpanID
	hasUp  bool
	thread bool
	label  string
	rank   [4]int64
	phases [phaseCount]intervalSet
}

func (g *sliceGroup) empty() bool {
	return len(g.phases[phaseQueue])+len(g.phases[phasePrefill])+len(g.phases[phaseDecode]) == 0
}

// treePart is a request span of a disaggregated request seen in the trace, waiting for the other side.
type treePart struct {
	role, partner string
}

type requestTree struct {
	groups map[pcommon.SpanID]*sliceGroup
	parts  map[pcommon.SpanID]treePart
}

// treeIndex holds the request trees being assembled, oldest trace forgotten first: at most maxTraces
// traces and maxEntries groups and parts in all.
type treeIndex struct {
	trees      map[pcommon.TraceID]*requestTree
	order      []pcommon.TraceID
	maxTraces  int
	maxEntries int
	entries    int
}

// treeEntriesPerTrace is what the index holds on average per trace at most: a request's tokenizer and
// scheduler threads with a few enclosing slices each, at TP 8.
const treeEntriesPerTrace = 16

func newTreeIndex(maxTraces int) *treeIndex {
	maxTraces = max(1, maxTraces)
	return &treeIndex{trees: map[pcommon.TraceID]*requestTree{}, maxTraces: maxTraces, maxEntries: treeEntriesPerTrace * maxTraces}
}

// drop forgets a whole trace.
func (ix *treeIndex) drop(tid pcommon.TraceID) {
	if t := ix.trees[tid]; t != nil {
		ix.entries -= len(t.groups) + len(t.parts)
		delete(ix.trees, tid)
	}
}

// evictFor makes room for one more entry in a trace other than keep, oldest trace first.
func (ix *treeIndex) evictFor(keep pcommon.TraceID) {
	for ix.entries >= ix.maxEntries && len(ix.order) > 0 {
		oldest := ix.order[0]
		if oldest == keep {
			if len(ix.order) == 1 {
				return
			}
			ix.order = append(ix.order[1:], oldest)
			continue
		}
		ix.order = ix.order[1:]
		ix.drop(oldest)
	}
}

func (ix *treeIndex) tree(tid pcommon.TraceID, create bool) *requestTree {
	t := ix.trees[tid]
	if t != nil || !create {
		return t
	}
	for len(ix.trees) >= ix.maxTraces && len(ix.order) > 0 {
		ix.drop(ix.order[0])
		ix.order = ix.order[1:]
	}
	if len(ix.order) >= 2*ix.maxTraces { // ids of trees already explained and forgotten
		live := ix.order[:0]
		for _, id := range ix.order {
			if ix.trees[id] != nil {
				live = append(live, id)
			}
		}
		ix.order = live
	}
	t = &requestTree{groups: map[pcommon.SpanID]*sliceGroup{}, parts: map[pcommon.SpanID]treePart{}}
	ix.trees[tid] = t
	ix.order = append(ix.order, tid)
	return t
}

func (ix *treeIndex) group(tid pcommon.TraceID, id pcommon.SpanID, create bool) *sliceGroup {
	t := ix.tree(tid, create)
	if t == nil {
		return nil
	}
	g := t.groups[id]
	if g == nil && create && len(t.groups) < maxTreeGroups {
		ix.evictFor(tid)
		if ix.entries >= ix.maxEntries {
			return nil
		}
		g = &sliceGroup{}
		t.groups[id] = g
		ix.entries++
	}
	return g
}

func (ix *treeIndex) addSlice(span ptrace.Span, phase int) {
	if g := ix.group(span.TraceID(), span.ParentSpanID(), true); g != nil {
		g.phases[phase] = g.phases[phase].add(interval{int64(span.StartTimestamp()), int64(span.EndTimestamp())})
	}
}

// link records where a span with slices under it (or a thread span, which will have) hangs in the tree.
func (ix *treeIndex) link(span ptrace.Span, thread bool, label string, rank [4]int64) {
	g := ix.group(span.TraceID(), span.SpanID(), thread)
	if g == nil {
		return
	}
	g.up, g.hasUp = span.ParentSpanID(), !span.ParentSpanID().IsEmpty()
	if thread {
		g.thread, g.label, g.rank = true, label, rank
	}
}

func (ix *treeIndex) addPart(tid pcommon.TraceID, id pcommon.SpanID, p treePart) {
	t := ix.tree(tid, true)
	if _, seen := t.parts[id]; seen || len(t.parts) >= maxTreeGroups {
		return
	}
	if ix.evictFor(tid); ix.entries < ix.maxEntries {
		t.parts[id] = p
		ix.entries++
	}
}

func (ix *treeIndex) hasGroup(tid pcommon.TraceID, id pcommon.SpanID) bool {
	return ix.group(tid, id, false) != nil
}

// treeRef is a request span whose phases its tree tells.
type treeRef struct {
	trace         pcommon.TraceID
	span          pcommon.SpanID
	role, partner string
}

// treePhases is what a request's tree says, phases disjoint.
type treePhases struct {
	phases [phaseCount]intervalSet
	// complete: every side of the request has its lowest rank's slices here, so waiting longer adds nothing.
	complete bool
	members  []pcommon.SpanID // the groups read, forgotten once the request is explained
	partners []pcommon.SpanID
}

func (tp *treePhases) any() bool {
	return len(tp.phases[phaseQueue])+len(tp.phases[phasePrefill])+len(tp.phases[phaseDecode]) > 0
}

// resolve reads a request's tree: its own slices and, for the decode side of a disaggregated request, the
// prefill side's in the same trace.
func (ix *treeIndex) resolve(ref treeRef) treePhases {
	var out treePhases
	t := ix.trees[ref.trace]
	if t == nil {
		return out
	}
	roots := map[pcommon.SpanID]bool{ref.span: true}
	if ref.role == "decode" && ref.partner != "" {
		for id, p := range t.parts {
			if p.role == "prefill" && p.partner == ref.partner {
				roots[id] = true
				out.partners = append(out.partners, id)
			}
		}
	}
	// The span directly under the root each group hangs from: a thread span, or the root itself.
	type side struct {
		root  pcommon.SpanID
		label string
	}
	type top struct {
		side   side
		rank   [4]int64
		phases [phaseCount]intervalSet
	}
	tops := map[pcommon.SpanID]*top{}
	for key, g := range t.groups {
		if g.empty() {
			continue
		}
		cur, below := key, key
		found := false
		for depth := 0; depth < maxTreeDepth; depth++ {
			if roots[cur] {
				found = true
				break
			}
			up := t.groups[cur]
			if up == nil || !up.hasUp {
				break
			}
			below, cur = cur, up.up
		}
		if !found {
			continue
		}
		out.members = append(out.members, key)
		tp := tops[below]
		if tp == nil {
			tp = &top{side: side{root: cur, label: "span " + below.String()}}
			if below == cur {
				tp.side.label = "" // slices directly under the request span
			} else if tg := t.groups[below]; tg != nil && tg.thread {
				tp.side.label, tp.rank = "thread "+tg.label, tg.rank
			}
			tops[below] = tp
		}
		for p := range phaseCount {
			tp.phases[p] = tp.phases[p].union(g.phases[p])
		}
	}
	chosen := map[side]*top{}
	for _, tp := range tops {
		if cur, ok := chosen[tp.side]; !ok || rankLess(tp.rank, cur.rank) {
			chosen[tp.side] = tp
		}
	}
	var all [phaseCount]intervalSet
	lowestRank := map[pcommon.SpanID]bool{}
	for s, tp := range chosen {
		for p := range phaseCount {
			all[p] = all[p].union(tp.phases[p])
		}
		if tp.rank == ([4]int64{}) {
			lowestRank[s.root] = true
		}
	}
	out.phases[phaseDecode] = all[phaseDecode]
	out.phases[phasePrefill] = all[phasePrefill].minus(all[phaseDecode])
	out.phases[phaseQueue] = all[phaseQueue].minus(all[phasePrefill]).minus(all[phaseDecode])
	out.complete = len(lowestRank) == len(roots) && (ref.role != "decode" || ref.partner == "" || len(out.partners) > 0)
	return out
}

func rankLess(a, b [4]int64) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// forget drops what a request's explanation read.
func (ix *treeIndex) forget(ref treeRef, tp treePhases) {
	t := ix.trees[ref.trace]
	if t == nil {
		return
	}
	for _, id := range append(tp.members, ref.span) {
		if _, ok := t.groups[id]; ok {
			delete(t.groups, id)
			ix.entries--
		}
	}
	for _, id := range tp.partners {
		if _, ok := t.parts[id]; ok {
			delete(t.parts, id)
			ix.entries--
		}
	}
	if len(t.groups) == 0 && len(t.parts) == 0 {
		delete(ix.trees, ref.trace)
	}
}

// treeShape is what the connector knows of the engines' request trees, from the schema.
type treeShape struct {
	stages map[string]int // stage-span name -> phase index
	specs  []*schema.SpanTree
	// names remembers which engine's request-span pattern each span name seen matches, so the patterns run
	// once per name rather than once per span; at most maxRememberedNames names (then the patterns run).
	// Used under the core's lock.
	names map[string]nameMatch
}

// nameMatch is what the request-span patterns say of one span name: the first engine's whose pattern
// matches it (-1 for none) and the side it names.
type nameMatch struct {
	spec int
	role string
}

// maxRememberedNames bounds treeShape.names: span names are few in practice (an engine's handful, a
// gateway's routes), but nothing stops a client from putting an id in one.
const maxRememberedNames = 4096

func newTreeShape(sch *schema.Schema) treeShape {
	s := treeShape{stages: map[string]int{}, specs: sch.SpanTrees(), names: map[string]nameMatch{}}
	for name, phase := range sch.SpanStages() {
		if i := phaseIndex(phase); i >= 0 {
			s.stages[name] = i
		}
	}
	return s
}

// slicePhase is the phase of a stage slice, -1 for any other span.
func (s treeShape) slicePhase(span ptrace.Span) int {
	if span.ParentSpanID().IsEmpty() {
		return -1
	}
	if p, ok := s.stages[span.Name()]; ok {
		return p
	}
	return -1
}

// thread tells a thread span, with its label and rank.
func (s treeShape) thread(span ptrace.Span) (bool, string, [4]int64) {
	attrs := span.Attributes()
	for _, spec := range s.specs {
		v, ok := attrs.Get(spec.ThreadAttribute)
		if !ok {
			continue
		}
		var rank [4]int64
		for i, key := range spec.RankAttributes {
			if i < len(rank) {
				rank[i] = rankValue(attrs, key)
			}
		}
		return true, v.AsString(), rank
	}
	return false, "", [4]int64{}
}

func rankValue(attrs pcommon.Map, key string) int64 {
	v, ok := attrs.Get(key)
	if !ok {
		return 0
	}
	switch v.Type() {
	case pcommon.ValueTypeInt:
		return v.Int()
	case pcommon.ValueTypeDouble:
		if d := v.Double(); !math.IsNaN(d) && !math.IsInf(d, 0) {
			return int64(d)
		}
	case pcommon.ValueTypeStr:
		if n, err := strconv.ParseInt(v.Str(), 10, 64); err == nil {
			return n
		}
	}
	return 0
}

// request tells a request span of a tree-shaped engine, with its side and its partner key.
func (s treeShape) request(span ptrace.Span) (bool, string, string) {
	m := s.matchName(span.Name())
	if m.spec < 0 {
		return false, "", ""
	}
	partner := ""
	for _, key := range s.specs[m.spec].PartnerAttributes {
		if v, ok := span.Attributes().Get(key); ok && v.AsString() != "" {
			partner = key + "=" + v.AsString()
			break
		}
	}
	return true, m.role, partner
}

// matchName is the first engine whose request-span pattern matches name, remembered per name.
func (s treeShape) matchName(name string) nameMatch {
	if m, ok := s.names[name]; ok {
		return m
	}
	m := nameMatch{spec: -1}
	for i, spec := range s.specs {
		if ok, role := spec.Match(name); ok {
			m = nameMatch{spec: i, role: role}
			break
		}
	}
	if s.names != nil && len(s.names) < maxRememberedNames {
		s.names[name] = m
	}
	return m
}

// spanRole is what a span is in the engines' request trees, read once per span of a batch: both the tree
// index and the reading of request spans ask it.
type spanRole struct {
	phase   int // the phase of a stage slice, -1 for any other span
	thread  bool
	label   string
	rank    [4]int64
	request bool   // named as a tree-shaped engine's request span
	side    string // of a disaggregated request: "prefill" or "decode"; "" when unified
	partner string
}

func (s treeShape) classify(span ptrace.Span) spanRole {
	r := spanRole{phase: s.slicePhase(span)}
	r.thread, r.label, r.rank = s.thread(span)
	r.request, r.side, r.partner = s.request(span)
	return r
}

// classifyBatch reads every span's role into c.roles, in the order the batch's spans are walked.
func (c *core) classifyBatch(td ptrace.Traces) []spanRole {
	roles := c.roles[:0]
	walkSpans(td, func(span ptrace.Span) { roles = append(roles, c.shape.classify(span)) })
	c.roles = roles
	return roles
}

// walkSpans calls fn for every span of td, in order.
func walkSpans(td ptrace.Traces, fn func(ptrace.Span)) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				fn(spans.At(k))
			}
		}
	}
}

// indexTrees adds a batch's stage slices, thread spans and request parts to the index, given each span's
// role (classifyBatch, same order); true when it had any (a request held for its tree may be complete now).
func (c *core) indexTrees(td ptrace.Traces, roles []spanRole) bool {
	added := false
	each := func(fn func(ptrace.Span, *spanRole)) {
		n := 0
		walkSpans(td, func(span ptrace.Span) {
			fn(span, &roles[n])
			n++
		})
	}
	// Slices first, so the spans they hang from, in the same batch, find their groups.
	each(func(span ptrace.Span, role *spanRole) {
		if role.phase >= 0 {
			c.trees.addSlice(span, role.phase)
			added = true
		}
	})
	each(func(span ptrace.Span, role *spanRole) {
		if role.thread {
			c.trees.link(span, true, role.label, role.rank)
			added = true
		} else if c.trees.hasGroup(span.TraceID(), span.SpanID()) {
			c.trees.link(span, false, "", role.rank)
		}
		if role.request && role.side == "prefill" {
			c.trees.addPart(span.TraceID(), span.SpanID(), treePart{role: role.side, partner: role.partner})
			added = true
		}
	})
	return added
}

// treeRequest tells what a span is in a request tree, given its role: a part never explained on its own (a
// thread span, a slice, the prefill side of a disaggregated request), or the request span the tree explains
// (ref set).
func (c *core) treeRequest(span ptrace.Span, role *spanRole) (part bool, ref *treeRef) {
	if role.phase >= 0 || role.thread || role.request && role.side == "prefill" {
		return true, nil
	}
	// A span named like a request span is one when it is an engine's (latency attributes) or has slices.
	if hasSlices := c.trees.hasGroup(span.TraceID(), span.SpanID()); hasSlices || role.request && isEngineRequest(span) {
		return false, &treeRef{trace: span.TraceID(), span: span.SpanID(), role: role.side, partner: role.partner}
	}
	return false, nil
}

// treesSettledLocked: every request of the batch read from a tree has its tree complete.
func (c *core) treesSettledLocked(b *batch) bool {
	for _, r := range b.requests {
		if r.tree != nil && !c.trees.resolve(*r.tree).complete {
			return false
		}
	}
	return true
}

// readTree sets a request's phases from its tree, where the tree has slices: a phase the slices say
// replaces the engine's attribute; the others stay. The engine's TTFT gives way to the one the slices say
// when it takes in most of the decode (a non-streaming response, whose first token is its last).
func (c *core) readTree(r *request) {
	if r.tree == nil {
		return
	}
	tp := c.trees.resolve(*r.tree)
	c.trees.forget(*r.tree, tp)
	if !tp.any() {
		return
	}
	if s := tp.phases[phaseQueue]; len(s) > 0 {
		r.queue = s.seconds()
	}
	if s := tp.phases[phasePrefill]; len(s) > 0 {
		r.prefill = s.seconds()
	}
	if s := tp.phases[phaseDecode]; len(s) > 0 {
		r.decode = s.seconds()
		if first := s[0].from; first >= r.start && r.start > 0 {
			treeTTFT := float64(first-r.start) / 1e9
			if math.IsNaN(r.ttft) || r.ttft-treeTTFT > r.decode/2 {
				r.ttft = treeTTFT
			}
		}
	}
	known := sumKnown(r.queue, r.prefill, r.decode)
	if math.IsNaN(r.e2e) || known > r.e2e {
		r.e2e = known
	}
	r.other = r.e2e - known
	r.tpot = math.NaN()
	if !math.IsNaN(r.decode) && r.genTokens > 1 {
		r.tpot = r.decode / (r.genTokens - 1)
	}
}
