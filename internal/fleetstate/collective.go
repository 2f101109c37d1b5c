package fleetstate

import (
	"math"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/schema"
)

// Collective communication, as the nccl receiver reports it: cumulative histograms of each rank's operation
// times and of arrival skew (how long the early ranks of a collective waited for the last one), and a gauge
// that says whether the replica's collective time can be seen at all.
//
// The histograms are cumulative per series and a replica has many series (rank x operation x size), which
// may arrive split across batches, and from several collectors (one per node, each reading its own ranks'
// files). The store keeps each series' last cumulative value and records, per batch and source, what grew:
// a snapshot is a delta, unlike the engine's.

// CollectiveSnapshot is what one batch of collective timings from one source added for one replica.
type CollectiveSnapshot struct {
	Time int64
	// Source is the host the batch's processes run on ("" for the receiver's replica-level resources).
	Source string
	// Elapsed is the time (s) since the same source's previous batch, which this batch's deltas cover; 0 for
	// a source's first batch, whose cumulative values are the baseline and add nothing.
	Elapsed float64
	// Observable is 1 when the receiver says the replica's collective time is observable, 0 when it says it
	// is not, NaN when this batch did not say.
	Observable float64
	Reason     string
	// Operations finished and their execution time (s), over all ranks.
	Operations, OperationSeconds float64
	// Skews are arrival-skew measurements and SkewSeconds their total: time the early ranks spent waiting for
	// a late peer. Waiters are the communicators (or, measured per rank, the ranks) the skews came from.
	Skews, SkewSeconds float64
	Waiters            map[string]bool
	// LateSeconds is skew seconds by the late rank's description ("tp rank 1, pp stage 0"), where named.
	LateSeconds map[string]float64
}

func collectiveTime(s CollectiveSnapshot) int64 { return s.Time }

// maxCollectiveSeries bounds the cumulative values a replica keeps (ranks x operations x size buckets).
// Series beyond it are not followed: forgetting one to make room would count its whole history again when
// it next arrived.
const maxCollectiveSeries = 4096

type cumulative struct {
	sum, count float64
	seen       int64
}

type collectiveState struct {
	last  map[string]*cumulative
	snaps ring[CollectiveSnapshot]
	// sources holds each source's newest batch time: a source's first batch is its baseline, and Elapsed
	// is measured per source.
	sources map[string]int64
	seen    int64 // newest data seen, for forgetting the quietest replica first
}

// collectiveReading gathers one replica's collective points from one source in one batch.
type collectiveReading struct {
	key  string
	snap CollectiveSnapshot
}

type readingKey struct{ replica, source string }

// readCollective adds rm's collective points to the batch's reading for its replica and source.
func (s *Store) readCollective(readings map[readingKey]*collectiveReading, key string, rm pmetric.ResourceMetrics) map[readingKey]*collectiveReading {
	sms := rm.ScopeMetrics()
	res := rm.Resource().Attributes()
	source := attrvalue.String(res, schema.AttrHostName)
	var rd *collectiveReading
	var st *collectiveState // made on the first point: most resources carry no collective timings
	first := false          // the source's first batch: a baseline
	reading := func(ts int64) *collectiveReading {
		if rd == nil {
			if readings == nil {
				readings = map[readingKey]*collectiveReading{}
			}
			rk := readingKey{key, source}
			rd = readings[rk]
			if rd == nil {
				rd = &collectiveReading{key: key, snap: CollectiveSnapshot{Source: source, Observable: math.NaN()}}
				readings[rk] = rd
			}
			st = s.collective(key, ts)
			_, seenBefore := st.sources[source]
			first = !seenBefore
		}
		if ts > rd.snap.Time {
			rd.snap.Time = ts
		}
		st.seen = max(st.seen, ts)
		return rd
	}
	resKey := ""
	for i := 0; i < sms.Len(); i++ {
		ms := sms.At(i).Metrics()
		for j := 0; j < ms.Len(); j++ {
			m := ms.At(j)
			switch {
			case m.Name() == schema.MetricLLMCollectiveObservability && m.Type() == pmetric.MetricTypeGauge:
				dps := m.Gauge().DataPoints()
				for k := 0; k < dps.Len(); k++ {
					dp := dps.At(k)
					r := reading(int64(dp.Timestamp()))
					observable := dp.IntValue() > 0 || dp.DoubleValue() > 0
					if v, ok := dp.Attributes().Get(schema.AttrLLMCollectiveObservable); ok {
						observable = v.Bool()
					}
					flag := 0.0
					if observable {
						flag = 1
					}
					r.snap.said(flag, attrvalue.String(dp.Attributes(), schema.AttrLLMCollectiveObservableReason))
				}
			case (m.Name() == schema.MetricLLMCollectiveDuration || m.Name() == schema.MetricLLMCollectiveArrivalSkew) && m.Type() == pmetric.MetricTypeHistogram:
				skew := m.Name() == schema.MetricLLMCollectiveArrivalSkew
				dps := m.Histogram().DataPoints()
				for k := 0; k < dps.Len(); k++ {
					dp := dps.At(k)
					if dp.Flags().NoRecordedValue() || !dp.HasSum() || math.IsNaN(dp.Sum()) || math.IsInf(dp.Sum(), 0) || dp.Sum() < 0 {
						continue
					}
					ts := int64(dp.Timestamp())
					r := reading(ts)
					if resKey == "" {
						resKey = resourceIdentity(res)
					}
					id := m.Name() + "\x00" + resKey + "\x00" + AttributesKey(dp.Attributes())
					dSum, dCount := st.grow(id, dp.Sum(), float64(dp.Count()), ts, first)
					if skew {
						r.snap.Skews += dCount
						r.snap.SkewSeconds += dSum
						if r.snap.Waiters == nil {
							r.snap.Waiters = map[string]bool{}
						}
						r.snap.Waiters[waiterOf(dp.Attributes())] = true
						if late := lateRankOf(dp.Attributes()); late != "" && dSum > 0 {
							if r.snap.LateSeconds == nil {
								r.snap.LateSeconds = map[string]float64{}
							}
							r.snap.LateSeconds[late] += dSum
						}
					} else {
						r.snap.Operations += dCount
						r.snap.OperationSeconds += dSum
					}
				}
			}
		}
	}
	return readings
}

// said takes what the receiver says of observability; any "no" wins: one blind process is enough to doubt
// the replica.
func (c *CollectiveSnapshot) said(observable float64, reason string) {
	if math.IsNaN(observable) {
		return
	}
	if math.IsNaN(c.Observable) || observable < c.Observable || (observable == c.Observable && c.Reason == "") {
		c.Observable, c.Reason = observable, reason
	}
}

// grow records a series' cumulative value and returns how much it grew since last seen; a drop is a
// restart, after which the new value is all growth, and a value older than the one held (a late or
// replayed batch) adds nothing. A series seen for the first time is a baseline in its source's first batch
// (its history predates the state); in later batches it is all growth: the nccl receiver emits every live
// series each interval, so one not seen before was born since (a new message size, a late rank first
// named).
func (c *collectiveState) grow(id string, sum, count float64, ts int64, baseline bool) (float64, float64) {
	prev := c.last[id]
	if prev == nil {
		if len(c.last) >= maxCollectiveSeries {
			return 0, 0
		}
		c.last[id] = &cumulative{sum: sum, count: count, seen: ts}
		if baseline {
			return 0, 0
		}
		return sum, count
	}
	if ts < prev.seen {
		return 0, 0
	}
	dSum, dCount := sum-prev.sum, count-prev.count
	if count < prev.count || sum < prev.sum {
		dSum, dCount = sum, count
	}
	prev.sum, prev.count, prev.seen = sum, count, ts
	return dSum, dCount
}

// collective is the replica's state, made (and the quietest replica forgotten at the cap) when first needed.
func (s *Store) collective(key string, ts int64) *collectiveState {
	r := s.replicaCollectives[key]
	if r == nil {
		s.makeRoom(len(s.replicaCollectives), func() {
			delete(s.replicaCollectives, oldest(s.replicaCollectives, func(c *collectiveState) int64 { return c.seen }))
		})
		r = &collectiveState{
			last: map[string]*cumulative{}, snaps: newRing[CollectiveSnapshot](s.cfg.MaxSnapshots),
			sources: map[string]int64{}, seen: ts,
		}
		s.replicaCollectives[key] = r
	}
	return r
}

// pushCollective stores one batch's reading for a replica and source.
func (s *Store) pushCollective(r *collectiveReading) {
	if r.snap.Time == 0 {
		return
	}
	st := s.collective(r.key, r.snap.Time)
	prev, known := st.sources[r.snap.Source]
	switch {
	case known && r.snap.Time == prev:
		// The rest of a batch that was split on its way (each series still counted once: deltas).
		for i := st.snaps.n - 1; i >= 0; i-- {
			sn := st.snaps.ptr(i)
			if sn.Time < prev {
				break
			}
			if sn.Time == prev && sn.Source == r.snap.Source {
				sn.merge(r.snap)
				return
			}
		}
	case known && r.snap.Time < prev:
		return // a late batch: its series added nothing (grow), and summaries assume time order
	case known:
		r.snap.Elapsed = float64(r.snap.Time-prev) / 1e9
	}
	st.sources[r.snap.Source] = r.snap.Time
	// Sources report at their own moments and may arrive out of order among themselves: insert in time order.
	st.snaps.insert(r.snap, collectiveTime, r.snap.Time-s.cfg.Window.Nanoseconds())
	cutoff := r.snap.Time - s.cfg.Window.Nanoseconds()
	for id, v := range st.last {
		if v.seen < cutoff {
			delete(st.last, id)
		}
	}
	for src, t := range st.sources {
		if t < cutoff {
			delete(st.sources, src)
		}
	}
}

func (c *CollectiveSnapshot) merge(o CollectiveSnapshot) {
	c.said(o.Observable, o.Reason)
	c.Operations += o.Operations
	c.OperationSeconds += o.OperationSeconds
	c.Skews += o.Skews
	c.SkewSeconds += o.SkewSeconds
	for w := range o.Waiters {
		if c.Waiters == nil {
			c.Waiters = map[string]bool{}
		}
		c.Waiters[w] = true
	}
	for who, s := range o.LateSeconds {
		if c.LateSeconds == nil {
			c.LateSeconds = map[string]float64{}
		}
		c.LateSeconds[who] += s
	}
}

// waiterOf names where a skew measurement came from: its communicator and operation (one measurement per
// collective), plus the measured rank for per-rank (self_history) measurements.
func waiterOf(attrs pcommon.Map) string {
	w := attrvalue.String(attrs, schema.AttrLLMCollectiveCommunicator)
	if rank, ok := attrs.Get(schema.AttrLLMCollectiveRank); ok {
		w += "/" + rank.AsString()
	}
	return w
}

// lateRankOf describes the late rank of a skew series by its place in the replica's layout where known.
func lateRankOf(attrs pcommon.Map) string {
	late, ok := attrs.Get(schema.AttrLLMCollectiveLateRank)
	if !ok {
		return ""
	}
	var parts []string
	if tp, ok := attrs.Get(schema.AttrLLMParallelTpRank); ok {
		parts = append(parts, "tp rank "+tp.AsString())
	}
	if pp, ok := attrs.Get(schema.AttrLLMParallelPpRank); ok {
		parts = append(parts, "pp stage "+pp.AsString())
	}
	if len(parts) == 0 {
		parts = append(parts, "rank "+late.AsString())
	}
	if comm := attrvalue.String(attrs, schema.AttrLLMCollectiveCommunicator); comm != "" {
		parts = append(parts, "communicator "+comm)
	}
	return strings.Join(parts, ", ")
}

// AttributesKey is a series' attributes as a key, independent of their order: what tells one cumulative
// series from another (both connectors take growth per series).
func AttributesKey(attrs pcommon.Map) string {
	kv := make([]string, 0, attrs.Len())
	attrs.Range(func(k string, v pcommon.Value) bool {
		kv = append(kv, k+"="+v.AsString())
		return true
	})
	sort.Strings(kv)
	return strings.Join(kv, "\x01")
}

// resourceIdentity tells apart the processes of one replica (one per rank).
func resourceIdentity(attrs pcommon.Map) string {
	return attrvalue.String(attrs, schema.AttrHostName) + "/" + attrvalue.String(attrs, schema.AttrHwID) + "/" + attrvalue.String(attrs, schema.AttrProcessPid)
}

// summarizeCollectives fills the collective fields of sum from the batches whose time covers part of
// [from, to]: a batch at T covers (T-Elapsed, T]. The wait share is skew seconds over the waiting capacity
// those batches cover: each batch's elapsed time times its communicators, summed over batches and sources.
func summarizeCollectives(c *collectiveState, from, to int64, sum *Summary) {
	if c == nil || c.snaps.n == 0 {
		return
	}
	skews, skewSeconds, opSeconds, ops, capacity := 0.0, 0.0, 0.0, 0.0, 0.0
	late := map[string]float64{}
	said := func(sn CollectiveSnapshot) {
		if !math.IsNaN(sn.Observable) && (math.IsNaN(sum.CollectiveObservable) || sn.Observable < sum.CollectiveObservable) {
			sum.CollectiveObservable, sum.CollectiveObservableReason = sn.Observable, sn.Reason
		}
	}
	for i := 0; i < c.snaps.n; i++ {
		sn := c.snaps.at(i)
		// (T-Elapsed, T] overlaps (from, to], or holds the instant when from == to.
		if sn.Time < from || (sn.Time == from && from < to) || sn.Time-int64(sn.Elapsed*1e9) >= to {
			continue
		}
		said(sn)
		if sn.Elapsed <= 0 {
			continue
		}
		skews += sn.Skews
		skewSeconds += sn.SkewSeconds
		ops += sn.Operations
		opSeconds += sn.OperationSeconds
		capacity += sn.Elapsed * float64(len(sn.Waiters))
		for who, s := range sn.LateSeconds {
			late[who] += s
		}
	}
	if math.IsNaN(sum.CollectiveObservable) {
		// No batch covers the interval yet: what the receiver said last before its end.
		for i := c.snaps.n - 1; i >= 0 && math.IsNaN(sum.CollectiveObservable); i-- {
			if sn := c.snaps.at(i); sn.Time <= to {
				said(sn)
			}
		}
	}
	if ops > 0 {
		sum.CollectiveOperations = ops
		sum.CollectiveMeanDuration = opSeconds / ops
	}
	if skews > 0 && capacity > 0 {
		sum.CollectiveSkewMean = skewSeconds / skews
		sum.CollectiveWaitShare = math.Min(1, skewSeconds/capacity)
		best := 0.0
		for who, s := range late {
			if s > best || (s == best && who < sum.CollectiveLateRank) {
				best, sum.CollectiveLateRank = s, who
			}
		}
		if sum.CollectiveLateRank != "" && skewSeconds > 0 {
			sum.CollectiveLateShare = best / skewSeconds
		}
	}
}

// CollectivesSettled reports whether the replica's collective timings can no longer change a summary that
// ends at end (unix ns): the receiver has reported at or after it, or it has not reported for a while (a
// replica without an nccl receiver, or one that went quiet, is not waited for).
func (s *Store) CollectivesSettled(key string, end int64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.replicaCollectives[key]
	if c == nil {
		return true
	}
	newest := c.seen
	return newest >= end || newest < end-int64(RecentLookback)
}
