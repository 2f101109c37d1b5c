package llmsignalsconnector

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/canonical"
	"github.com/servescope/servescope/internal/fleetstate"
	"github.com/servescope/servescope/internal/heavyhitters"
	"github.com/servescope/servescope/internal/labelcap"
	"github.com/servescope/servescope/internal/schema"
)

// usage collects, per replica, what llm_root_cause counted since the last evaluation: tokens per tenant and
// model, cached prompt tokens per tenant, and prefill and decode seconds. Its metrics are cumulative; usage
// keeps the last value of each series and hands out the growth.
type usage struct {
	last    map[string]lastValue // by series: metric, replica and every attribute, as seriesID makes it
	pending map[string]*replicaUsage
	// The tenants and models with cost of their own: the busiest recently. One that loses its place loses
	// its cost series (they go on under `_other`).
	tenants, models *heavyhitters.Tracker
	costs           *costBook
	labelLength     int
	newest          int64 // the newest data point time seen (unix ns)
}

// lastValue is a cumulative series' last value and when it was seen (unix ns, the data's clock).
type lastValue struct {
	value float64
	at    int64
}

type usageKey struct{ metric, replica, tenant, model, sub string }

// seriesID names one cumulative series by everything that tells it apart. Growth is taken per series, not
// per usageKey: several series fold into one key (tenants beyond the cap into _other, the prompt families
// of one tenant), and taking growth across them would read each switch between them as a restart.
func seriesID(metric, replica string, attrs pcommon.Map) string {
	return metric + "\x00" + replica + "\x00" + fleetstate.AttributesKey(attrs)
}

type tenantModel struct{ tenant, model string }

type tokenModel struct{ tokenType, model string }

type replicaUsage struct {
	tokens   map[tenantModel]float64
	cached   map[tenantModel]float64
	requests map[tenantModel]float64 // finished requests (llm.request.root_cause, all causes)
	queued   map[tenantModel]float64 // seconds in queue (the queue phase's sum)
	byType   map[string]float64      // tokens by llm.token.type (prompt, generation)
	phases   map[string]float64      // prefill, decode: seconds
	// queueTimes is the engine's queue-time histogram over the interval (bucket growth; bounds of the first
	// series seen for the replica).
	queueBounds []float64
	queueCounts []float64
}

// slotHalfLife is how fast a tenant's or model's claim to a place fades when it goes quiet.
const slotHalfLife = time.Hour

func newUsage(cfg *Config, costs *costBook) *usage {
	return &usage{
		last: map[string]lastValue{}, pending: map[string]*replicaUsage{}, costs: costs, labelLength: cfg.MaxLabelLength,
		tenants: heavyhitters.New(cfg.MaxTenants, slotHalfLife), models: heavyhitters.New(cfg.MaxModels, slotHalfLife),
	}
}

// seriesForgetAfter is how long a cumulative series may go unseen before its last value is forgotten, so
// the map of last values holds the series of the recent past only (llm_root_cause re-sends each of its
// series every flush; one that stops was dropped or restarted, and counts from zero if it comes back).
func seriesForgetAfter(cfg *Config) int64 {
	return max(int64(10*time.Minute), 10*int64(cfg.Interval))
}

// sweep forgets the series not seen for seriesForgetAfter.
func (u *usage) sweep(now int64, cfg *Config) {
	horizon := now - seriesForgetAfter(cfg)
	for k, v := range u.last {
		if v.at < horizon {
			delete(u.last, k)
		}
	}
}

const unattributed = "unattributed"

// maxCounterValue bounds a cumulative token count or number of seconds: 10^15 tokens is more than a large
// fleet processes in years.
const maxCounterValue = 1e15

// observe records the growth of llm_root_cause's counters and returns the newest data point time in md
// (unix ns), the clock evaluations run on.
func (u *usage) observe(md pmetric.Metrics, store *fleetstate.Store) int64 {
	var newest int64
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		res := rms.At(i).Resource().Attributes()
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				newest = max(newest, latest(m))
				u.newest = max(u.newest, newest)
				switch m.Name() {
				case schema.MetricLLMTenantTokens, schema.MetricLLMTenantPromptTokens:
					dps := m.Sum().DataPoints()
					for n := 0; n < dps.Len(); n++ {
						dp := dps.At(n)
						a := dp.Attributes()
						sub := attrvalue.String(a, schema.AttrLLMTokenType) + attrvalue.String(a, schema.AttrLLMPromptCache)
						if m.Name() == schema.MetricLLMTenantPromptTokens && sub != "cached" {
							continue
						}
						key := usageKey{m.Name(), replicaOf(a, res, store), u.tenant(attrvalue.String(a, schema.AttrLLMTenant)), u.model(attrvalue.String(a, schema.AttrGenAIRequestModel)), sub}
						d := u.grow(seriesID(m.Name(), key.replica, a), dp.DoubleValue())
						ru := u.of(key.replica)
						if m.Name() == schema.MetricLLMTenantTokens {
							ru.tokens[tenantModel{key.tenant, key.model}] += d
							ru.byType[sub] += d
						} else {
							ru.cached[tenantModel{key.tenant, key.model}] += d
						}
					}
				case schema.MetricLLMRequestRootCause:
					dps := m.Sum().DataPoints()
					for n := 0; n < dps.Len(); n++ {
						dp := dps.At(n)
						a := dp.Attributes()
						key := usageKey{m.Name(), replicaOf(a, res, store), u.tenant(attrvalue.String(a, schema.AttrLLMTenant)), u.model(attrvalue.String(a, schema.AttrGenAIRequestModel)), attrvalue.String(a, schema.AttrLLMRootCause)}
						u.of(key.replica).requests[tenantModel{key.tenant, key.model}] += u.grow(seriesID(m.Name(), key.replica, a), dp.DoubleValue())
					}
				case schema.MetricLLMRequestPhaseDuration:
					dps := m.Histogram().DataPoints()
					for n := 0; n < dps.Len(); n++ {
						dp := dps.At(n)
						a := dp.Attributes()
						phase := attrvalue.String(a, schema.AttrLLMPhase)
						key := usageKey{m.Name(), replicaOf(a, res, store), u.tenant(attrvalue.String(a, schema.AttrLLMTenant)), u.model(attrvalue.String(a, schema.AttrGenAIRequestModel)), phase}
						grown := u.grow(seriesID(m.Name(), key.replica, a), dp.Sum())
						ru := u.of(key.replica)
						switch phase {
						case schema.PhasePrefill, schema.PhaseDecode:
							ru.phases[phase] += grown
						case schema.PhaseQueue:
							ru.queued[tenantModel{key.tenant, key.model}] += grown
						}
					}
				case schema.MetricLLMRequestQueueTime:
					dps := m.Histogram().DataPoints()
					replica := store.ReplicaKey(res)
					for n := 0; n < dps.Len(); n++ {
						dp := dps.At(n)
						u.queueHistogram(replica, dp)
					}
				}
			}
		}
	}
	return newest
}

// queueHistogram adds the growth of one series of the engine's queue-time histogram to its replica's
// interval; series whose bounds differ from the replica's first one are skipped (one engine, one layout).
func (u *usage) queueHistogram(replica string, dp pmetric.HistogramDataPoint) {
	ru := u.of(replica)
	bounds := dp.ExplicitBounds().AsRaw()
	if ru.queueBounds == nil {
		ru.queueBounds, ru.queueCounts = bounds, make([]float64, len(bounds)+1)
	}
	if len(bounds) != len(ru.queueBounds) || dp.BucketCounts().Len() != len(ru.queueCounts) {
		return
	}
	series := seriesID(schema.MetricLLMRequestQueueTime, replica, dp.Attributes())
	for i := 0; i < dp.BucketCounts().Len(); i++ {
		ru.queueCounts[i] += u.grow(series+"\x00"+strconv.Itoa(i), float64(dp.BucketCounts().At(i)))
	}
}

// quantile estimates the q-quantile of the interval's queue times: the upper bound of the bucket it falls in
// (the last finite bound for the overflow bucket). NaN with no requests.
func (ru *replicaUsage) queueQuantile(q float64) (float64, float64) {
	total := 0.0
	for _, c := range ru.queueCounts {
		total += c
	}
	if total <= 0 || len(ru.queueBounds) == 0 {
		return math.NaN(), total
	}
	seen := 0.0
	for i, c := range ru.queueCounts {
		seen += c
		if seen >= q*total {
			if i < len(ru.queueBounds) {
				return ru.queueBounds[i], total
			}
			return ru.queueBounds[len(ru.queueBounds)-1], total
		}
	}
	return ru.queueBounds[len(ru.queueBounds)-1], total
}

// grow returns how much a cumulative series grew since it was last seen (all of it the first time, since
// llm_root_cause's counters start with it; a drop is a restart).
func (u *usage) grow(series string, v float64) float64 {
	// A counter that is NaN, infinite, negative or beyond any fleet's lifetime total is not a count: it is
	// skipped (and its series keeps its last good value), so it can poison neither a share nor a sum.
	if !(v >= 0 && v <= maxCounterValue) {
		return 0
	}
	last, seen := u.last[series]
	prev := last.value
	u.last[series] = lastValue{value: v, at: u.newest}
	switch {
	case !seen || v < prev:
		return v
	default:
		return v - prev
	}
}

const otherSlot = "_other"

// tenant is the name cost is booked under: the tenant's own while it is among the max_tenants busiest,
// `_other` otherwise. Weighted by series updates on the data's clock.
func (u *usage) tenant(t string) string {
	t = labelcap.Cut(t, u.labelLength)
	if t == "" {
		return unattributed
	}
	return u.slot(u.tenants, t, func(k costKey) string { return k.tenant })
}

// model is the name a model's cost is booked under, as tenant is for tenants.
func (u *usage) model(m string) string {
	m = labelcap.Cut(m, u.labelLength)
	if m == "" {
		return m
	}
	return u.slot(u.models, m, func(k costKey) string { return k.model })
}

// slot counts one series update of name and returns it while it holds a place, `_other` otherwise; a name
// that loses its place to it loses its cost series (field says which part of a cost key names it).
func (u *usage) slot(places *heavyhitters.Tracker, name string, field func(costKey) string) string {
	switch name {
	case otherSlot, unattributed, "unknown":
		return name
	}
	return places.Place(name, u.newest, otherSlot, func(evicted string) {
		u.costs.forget(func(k costKey) bool { return field(k) == evicted })
	})
}

func (u *usage) of(replica string) *replicaUsage {
	ru := u.pending[replica]
	if ru == nil {
		ru = &replicaUsage{
			tokens: map[tenantModel]float64{}, cached: map[tenantModel]float64{}, requests: map[tenantModel]float64{},
			queued: map[tenantModel]float64{}, phases: map[string]float64{}, byType: map[string]float64{},
		}
		u.pending[replica] = ru
	}
	return ru
}

// take hands out a replica's usage since the last evaluation. sole: the only replica, which also gets the
// usage that named no replica (llm_root_cause configured without the replica dimension).
func (u *usage) take(replica string, sole bool) *replicaUsage {
	ru := u.of(replica)
	delete(u.pending, replica)
	if sole {
		if anon := u.pending[""]; anon != nil {
			for _, pair := range []struct{ to, from map[tenantModel]float64 }{
				{ru.tokens, anon.tokens},
				{ru.cached, anon.cached},
				{ru.requests, anon.requests},
				{ru.queued, anon.queued},
			} {
				for k, v := range pair.from {
					pair.to[k] += v
				}
			}
			for k, v := range anon.phases {
				ru.phases[k] += v
			}
			for k, v := range anon.byType {
				ru.byType[k] += v
			}
			delete(u.pending, "")
		}
	}
	return ru
}

func replicaOf(attrs, res pcommon.Map, store *fleetstate.Store) string {
	if r := attrvalue.String(attrs, schema.AttrServiceInstanceID); r != "" {
		return r
	}
	return store.ReplicaKey(res)
}

func latest(m pmetric.Metric) int64 {
	var t int64
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		for i := 0; i < m.Gauge().DataPoints().Len(); i++ {
			t = max(t, int64(m.Gauge().DataPoints().At(i).Timestamp()))
		}
	case pmetric.MetricTypeSum:
		for i := 0; i < m.Sum().DataPoints().Len(); i++ {
			t = max(t, int64(m.Sum().DataPoints().At(i).Timestamp()))
		}
	case pmetric.MetricTypeHistogram:
		for i := 0; i < m.Histogram().DataPoints().Len(); i++ {
			t = max(t, int64(m.Histogram().DataPoints().At(i).Timestamp()))
		}
	}
	return t
}

// costBook holds the cumulative cost counters.
type costBook struct {
	gpuTime, amount, savings map[costKey]float64
	categories               map[categoryKey]float64
	// interval is this evaluation's cost per tenant and model, and requests the requests they finished,
	// for the cost per request; both are reset every evaluation.
	interval, requests map[tenantModel]float64
	// phaseCost and phaseTokens are this evaluation's prefill and decode cost and the tokens they produced,
	// per model: computed prompt tokens for prefill, generated tokens for decode.
	phaseCost, phaseTokens map[tokenModel]float64
}

type costKey struct{ tenant, model, replica string }

// forget drops the cumulative cost series that match (a tenant or model that lost its place).
func (b *costBook) forget(match func(costKey) bool) {
	for _, m := range []map[costKey]float64{b.gpuTime, b.amount, b.savings} {
		maps.DeleteFunc(m, func(k costKey, _ float64) bool { return match(k) })
	}
}

type categoryKey struct{ category, model, replica string }

func newCostBook() *costBook {
	return &costBook{
		gpuTime: map[costKey]float64{}, amount: map[costKey]float64{}, savings: map[costKey]float64{},
		categories: map[categoryKey]float64{}, interval: map[tenantModel]float64{}, requests: map[tenantModel]float64{},
		phaseCost: map[tokenModel]float64{}, phaseTokens: map[tokenModel]float64{},
	}
}

// charge books dt seconds of a replica's GPUs: split among tenant and model by their share of the tokens the
// replica processed in the interval (all to `unattributed` when no request reported any), and by category:
// busy time (GPU utilization x time) split between prefill and decode by their seconds, the rest idle.
func (b *costBook) charge(cfg *Config, v *view, u *replicaUsage, dt float64) {
	gpus, price := float64(cfg.Cost.GPUsPerReplica), float64(cfg.Cost.GPUsPerReplica)*cfg.Cost.DefaultGPUPricePerHour
	if len(v.interval.GPUNames) > 0 {
		gpus, price = float64(len(v.interval.GPUNames)), 0
		for _, name := range v.interval.GPUNames {
			p, ok := cfg.Cost.GPUPricePerHour[name]
			if !ok {
				p = cfg.Cost.DefaultGPUPricePerHour
			}
			price += p
		}
	}
	gpuSeconds, cost := gpus*dt, price*dt/3600
	for tm, n := range u.requests {
		b.requests[tenantModel{tm.tenant, orUnknown(tm.model)}] += n
	}
	total := 0.0
	for _, t := range u.tokens {
		total += t
	}
	if total <= 0 {
		k := costKey{unattributed, v.model, v.replica}
		b.gpuTime[k] += gpuSeconds
		b.amount[k] += cost
	} else {
		for tm, t := range u.tokens {
			k := costKey{tm.tenant, orUnknown(tm.model), v.replica}
			b.gpuTime[k] += gpuSeconds * t / total
			b.amount[k] += cost * t / total
			b.interval[tenantModel{tm.tenant, orUnknown(tm.model)}] += cost * t / total
		}
	}
	// What the prefix cache saved: each cached prompt token at the cost of computing one, the prefill
	// cost per computed prompt token where the phases are known, else the cost per processed token.
	saved := math.NaN()
	if total > 0 {
		saved = cost / total
	}
	cachedTotal := 0.0
	for _, c := range u.cached {
		cachedTotal += c
	}
	util := v.interval.GPUUtilizationMean
	prefill, decode := u.phases[schema.PhasePrefill], u.phases[schema.PhaseDecode]
	if computed := u.byType["prompt"] - cachedTotal; known(util) && prefill+decode > 0 && computed > 0 {
		saved = gpuSeconds * math.Min(1, math.Max(0, util)) * prefill / (prefill + decode) * (cost / gpuSeconds) / computed
	}
	if known(saved) {
		for tm, cached := range u.cached {
			b.savings[costKey{tm.tenant, orUnknown(tm.model), v.replica}] += cached * saved
		}
	}
	if !known(util) {
		b.categories[categoryKey{schema.CostCategoryUnmeasured, v.model, v.replica}] += gpuSeconds
		return
	}
	busy := gpuSeconds * math.Min(1, math.Max(0, util))
	idle := schema.CostCategoryIdle
	if v.interval.WaitingMax >= 1 {
		idle = schema.CostCategoryIdleWhileWaiting // queue-induced waste: requests waited while the GPUs had room
	}
	b.categories[categoryKey{idle, v.model, v.replica}] += gpuSeconds - busy
	// NCCL kernels spin while a rank waits for a late peer, so that wait shows as busy: carve it out first.
	working := busy
	if share := v.interval.CollectiveWaitShare; known(share) && v.interval.CollectiveObservable != 0 {
		wait := busy * math.Min(1, share)
		b.categories[categoryKey{schema.CostCategoryCollectiveWait, v.model, v.replica}] += wait
		working -= wait
	}
	if prefill+decode <= 0 {
		b.categories[categoryKey{schema.CostCategoryBusy, v.model, v.replica}] += working
		return
	}
	prefillTime := working * prefill / (prefill + decode)
	// Cache-miss overhead: the prompt tokens computed beyond what the replica's usual hit ratio would have
	// left to compute, (usual - now) / (1 - now) of the prefill time.
	if hit, usual := v.interval.PrefixHitRatio, v.interval.PrefixHitRatioUsual; known(hit, usual) && usual > hit && hit < 1 {
		miss := prefillTime * (usual - hit) / (1 - hit)
		b.categories[categoryKey{schema.CostCategoryCacheMiss, v.model, v.replica}] += miss
		prefillTime -= miss
	}
	b.categories[categoryKey{schema.CostCategoryPrefill, v.model, v.replica}] += prefillTime
	b.categories[categoryKey{schema.CostCategoryDecode, v.model, v.replica}] += working * decode / (prefill + decode)
	// Per token: the busy share of the bill split by phase, over what each phase produced.
	perSecond := cost / gpuSeconds
	cached := 0.0
	for _, c := range u.cached {
		cached += c
	}
	b.phaseCost[tokenModel{"prompt", v.model}] += busy * prefill / (prefill + decode) * perSecond
	b.phaseCost[tokenModel{"generation", v.model}] += busy * decode / (prefill + decode) * perSecond
	b.phaseTokens[tokenModel{"prompt", v.model}] += math.Max(0, u.byType["prompt"]-cached)
	b.phaseTokens[tokenModel{"generation", v.model}] += u.byType["generation"]
}

// perRequest writes this evaluation's cost per request (per tenant and model) and per token (per token type
// and model), and starts the next interval.
func (b *costBook) perRequest(g *gauges) {
	writeRatios(g, canonical.LLMCostPerRequest, b.interval, b.requests,
		func(a, c tenantModel) int {
			return cmp.Or(cmp.Compare(a.tenant, c.tenant), cmp.Compare(a.model, c.model))
		},
		func(k tenantModel) []string {
			return []string{schema.AttrLLMTenant, k.tenant, schema.AttrGenAIRequestModel, k.model}
		})
	writeRatios(g, canonical.LLMCostPerToken, b.phaseCost, b.phaseTokens,
		func(a, c tokenModel) int {
			return cmp.Or(cmp.Compare(a.model, c.model), cmp.Compare(a.tokenType, c.tokenType))
		},
		func(k tokenModel) []string {
			return []string{schema.AttrLLMTokenType, k.tokenType, schema.AttrGenAIRequestModel, k.model}
		})
}

// writeRatios sets the gauge to num[k]/den[k] for every key with a positive denominator, keys in order, and
// clears both maps: the per-interval ratios.
func writeRatios[K comparable](g *gauges, gauge canonical.Gauge, num, den map[K]float64, order func(a, b K) int, attrs func(K) []string) {
	for _, k := range slices.SortedFunc(maps.Keys(num), order) {
		if n := den[k]; n > 0 {
			g.set(gauge, num[k]/n, attrs(k)...)
		}
	}
	clear(num)
	clear(den)
}

func (b *costBook) write(ms pmetric.MetricSlice, start, ts pcommon.Timestamp) {
	byTenant := func(a, c costKey) int {
		return cmp.Or(cmp.Compare(a.replica, c.replica), cmp.Compare(a.model, c.model), cmp.Compare(a.tenant, c.tenant))
	}
	tenantAttrs := func(k costKey) []string {
		return []string{schema.AttrLLMTenant, k.tenant, schema.AttrGenAIRequestModel, k.model, schema.AttrServiceInstanceID, k.replica}
	}
	writeCounter(ms, canonical.LLMCostGPUTime, b.gpuTime, byTenant, tenantAttrs, start, ts)
	writeCounter(ms, canonical.LLMCostAmount, b.amount, byTenant, tenantAttrs, start, ts)
	writeCounter(ms, canonical.LLMCostPrefixCacheSavings, b.savings, byTenant, tenantAttrs, start, ts)
	writeCounter(ms, canonical.LLMCostGPUTimeByCategory, b.categories,
		func(a, c categoryKey) int {
			return cmp.Or(cmp.Compare(a.replica, c.replica), cmp.Compare(a.category, c.category))
		},
		func(k categoryKey) []string {
			return []string{schema.AttrLLMCostCategory, k.category, schema.AttrGenAIRequestModel, k.model, schema.AttrServiceInstanceID, k.replica}
		}, start, ts)
}

// writeCounter writes one cumulative counter, its series in a stable order; nothing when it has none.
func writeCounter[K comparable](ms pmetric.MetricSlice, counter canonical.Counter, values map[K]float64,
	order func(a, b K) int, attrs func(K) []string, start, ts pcommon.Timestamp,
) {
	if len(values) == 0 {
		return
	}
	sum := counter.AppendTo(ms)
	keys := make([]K, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, order)
	for _, k := range keys {
		dp := sum.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(ts)
		dp.SetDoubleValue(values[k])
		kv := attrs(k)
		for i := 0; i+1 < len(kv); i += 2 {
			dp.Attributes().PutStr(kv[i], kv[i+1])
		}
	}
}
