package fleetstate

import (
	"math"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/schema"
)

// Collective communication, as the nccl receiver reports it: cumulative histograms of each rank's operation
// times and of arrival skew (how long the early ranks of a collective waited for the last one), and a gauge
// that says whether the replica's collective time can be seen at all.
//
// The histograms are cumulative per series and a replica has many series (rank x operation x size), which
// may arrive split across batches; the store keeps each series' last cumulative value and records, per
// batch, what grew. A snapshot is therefore a delta, unlike the engine's.

// CollectiveSnapshot is what one batch of collective timings added for one replica.
type CollectiveSnapshot struct {
	Time int64
	// Elapsed is the time (s) since the replica's previous collective batch, which this batch's deltas cover;
	// 0 for the first batch, whose cumulative values are the baseline and add nothing.
	Elapsed float64
	// Observable is 1 when the receiver says the replica's collective time is observable, 0 when it says it
	// is not, NaN when this batch did not say.
	Observable float64
	Reason     string
	// Operations finished and their execution time (s), over all ranks.
	Operations, OperationSeconds float64
	// Skews are arrival-skew measurements and SkewSeconds their total: time the early ranks spent waiting for a late
	// peer. Waiters is how many communicators (or, measured per rank, ranks) the skews came from.
	Skews, SkewSeconds float64
	Waiters            int
	// LateSeconds is skew seconds by the late rank's description ("tp rank 1, pp stage 0"), where named.
	LateSeconds map[string]float64
}

func collectiveTime(s CollectiveSnapshot) int64 { return s.Time }

// maxCollectiveSeries bounds the cumulative values a replica keeps (ranks x operations x size buckets).
const maxCollectiveSeries = 4096

type cumulative struct {
	sum, count float64
	seen       int64
}

type collectiveState struct {
	last  map[string]*cumulative
	snaps ring[CollectiveSnapshot]
}

// collectiveReading gathers one replica's collective points from one batch.
type collectiveReading struct {
	snap     CollectiveSnapshot
	waiters  map[string]bool
	observed bool
}

// readCollective adds rm's collective points to the batch's reading for its replica.
func (s *Store) readCollective(readings map[string]*collectiveReading, key string, rm pmetric.ResourceMetrics) map[string]*collectiveReading {
	sms := rm.ScopeMetrics()
	var rd *collectiveReading
	reading := func() *collectiveReading {
		if rd == nil {
			if readings == nil {
				readings = map[string]*collectiveReading{}
			}
			rd = readings[key]
			if rd == nil {
				rd = &collectiveReading{snap: CollectiveSnapshot{Observable: math.NaN()}, waiters: map[string]bool{}}
				readings[key] = rd
			}
		}
		return rd
	}
	var st *collectiveState // made on the first histogram: most resources carry no collective timings
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
					r := reading()
					r.observed = true
					r.stamp(int64(dp.Timestamp()))
					observable := dp.IntValue() > 0 || dp.DoubleValue() > 0
					if v, ok := dp.Attributes().Get(schema.AttrLLMCollectiveObservable); ok {
						observable = v.Bool()
					}
					// Any "no" wins: one blind process is enough to doubt the replica.
					if observable && math.IsNaN(r.snap.Observable) {
						r.snap.Observable = 1
					} else if !observable {
						r.snap.Observable = 0
					}
					if reason, ok := dp.Attributes().Get(schema.AttrLLMCollectiveObservableReason); ok && (r.snap.Reason == "" || !observable) {
						r.snap.Reason = reason.AsString()
					}
				}
			case (m.Name() == schema.MetricLLMCollectiveDuration || m.Name() == schema.MetricLLMCollectiveArrivalSkew) && m.Type() == pmetric.MetricTypeHistogram:
				skew := m.Name() == schema.MetricLLMCollectiveArrivalSkew
				dps := m.Histogram().DataPoints()
				for k := 0; k < dps.Len(); k++ {
					dp := dps.At(k)
					if dp.Flags().NoRecordedValue() || !dp.HasSum() || math.IsNaN(dp.Sum()) || math.IsInf(dp.Sum(), 0) || dp.Sum() < 0 {
						continue
					}
					r := reading()
					ts := int64(dp.Timestamp())
					r.stamp(ts)
					if st == nil {
						st, resKey = s.collective(key), resourceIdentity(rm.Resource().Attributes())
					}
					id := m.Name() + "\x00" + resKey + "\x00" + attributeIdentity(dp.Attributes())
					dSum, dCount := st.grow(id, dp.Sum(), float64(dp.Count()), ts)
					if skew {
						r.snap.Skews += dCount
						r.snap.SkewSeconds += dSum
						r.waiters[waiterOf(dp.Attributes())] = true
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

func (r *collectiveReading) stamp(ts int64) {
	if ts > r.snap.Time {
		r.snap.Time = ts
	}
}

// grow records a series' cumulative value and returns how much it grew since last seen; a drop is a
// restart, after which the new value is all growth. A series seen for the first time is a baseline in the
// replica's first batch (its history predates the state). In later batches it is all growth: the nccl
// receiver emits every live series each interval, so one not seen before was born since the last batch (a
// new message size, a late rank first named).
func (c *collectiveState) grow(id string, sum, count float64, ts int64) (float64, float64) {
	prev := c.last[id]
	if prev == nil {
		if len(c.last) >= maxCollectiveSeries {
			c.forgetOldest()
		}
		c.last[id] = &cumulative{sum: sum, count: count, seen: ts}
		if c.snaps.n == 0 {
			return 0, 0
		}
		return sum, count
	}
	dSum, dCount := sum-prev.sum, count-prev.count
	if count < prev.count || sum < prev.sum {
		dSum, dCount = sum, count
	}
	prev.sum, prev.count, prev.seen = sum, count, ts
	return dSum, dCount
}

func (c *collectiveState) forgetOldest() {
	delete(c.last, oldest(c.last, func(v *cumulative) int64 { return v.seen }))
}

func (s *Store) collective(key string) *collectiveState {
	r := s.replicaCollectives[key]
	if r == nil {
		s.makeRoom(len(s.replicaCollectives), func() {
			delete(s.replicaCollectives, oldest(s.replicaCollectives, func(c *collectiveState) int64 { return c.newest() }))
		})
		r = &collectiveState{last: map[string]*cumulative{}, snaps: newRing[CollectiveSnapshot](s.cfg.MaxSnapshots)}
		s.replicaCollectives[key] = r
	}
	return r
}

func (c *collectiveState) newest() int64 {
	if c.snaps.n == 0 {
		return 0
	}
	return c.snaps.at(c.snaps.n - 1).Time
}

// pushCollective stores one batch's reading for a replica.
func (s *Store) pushCollective(key string, r *collectiveReading) {
	if r.snap.Time == 0 {
		return
	}
	st := s.collective(key)
	r.snap.Waiters = len(r.waiters)
	if last := st.snaps.newest(); last != nil && last.Time == r.snap.Time {
		// The rest of a batch that was split on its way (each series still counted once: deltas).
		last.merge(r.snap)
	} else {
		if prev := st.newest(); prev > 0 && r.snap.Time > prev {
			r.snap.Elapsed = float64(r.snap.Time-prev) / 1e9
		}
		st.snaps.push(r.snap, collectiveTime, r.snap.Time-s.cfg.Window.Nanoseconds())
	}
	cutoff := r.snap.Time - s.cfg.Window.Nanoseconds()
	for id, v := range st.last {
		if v.seen < cutoff {
			delete(st.last, id)
		}
	}
}

func (c *CollectiveSnapshot) merge(o CollectiveSnapshot) {
	if !math.IsNaN(o.Observable) && (math.IsNaN(c.Observable) || o.Observable < c.Observable) {
		c.Observable, c.Reason = o.Observable, o.Reason
	}
	c.Operations += o.Operations
	c.OperationSeconds += o.OperationSeconds
	c.Skews += o.Skews
	c.SkewSeconds += o.SkewSeconds
	c.Waiters = max(c.Waiters, o.Waiters)
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
	w := text(attrs, schema.AttrLLMCollectiveCommunicator)
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
	if comm := text(attrs, schema.AttrLLMCollectiveCommunicator); comm != "" {
		parts = append(parts, "communicator "+comm)
	}
	return strings.Join(parts, ", ")
}

func text(attrs pcommon.Map, key string) string {
	if v, ok := attrs.Get(key); ok {
		return v.AsString()
	}
	return ""
}

// attributeIdentity is a series' attributes as a key, independent of their order.
func attributeIdentity(attrs pcommon.Map) string {
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
	return text(attrs, schema.AttrHostName) + "/" + text(attrs, schema.AttrHwID) + "/" + text(attrs, schema.AttrProcessPid)
}

// summarizeCollectives fills the collective fields of sum from the batches whose time covers part of
// [from, to]: a batch at T covers (T-Elapsed, T].
func summarizeCollectives(c *collectiveState, from, to int64, sum *Summary) {
	if c == nil || c.snaps.n == 0 {
		return
	}
	skews, skewSeconds, opSeconds, ops, elapsed := 0.0, 0.0, 0.0, 0.0, 0.0
	waiters := 0
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
		elapsed += sn.Elapsed
		waiters = max(waiters, sn.Waiters)
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
	if skews > 0 && elapsed > 0 && waiters > 0 {
		sum.CollectiveSkewMean = skewSeconds / skews
		sum.CollectiveWaitShare = math.Min(1, skewSeconds/(elapsed*float64(waiters)))
		best := 0.0
		for who, s := range late {
			if s > best || (s == best && who < sum.CollectiveLateRank) {
				best, sum.CollectiveLateRank = s, who
			}
		}
		if skewSeconds > 0 {
			sum.CollectiveLateShare = best / skewSeconds
		}
	}
}
