package llmsignalsconnector

import (
	"math"
	"time"
)

// demand is what a pool's desired replica count is planned from, kept across evaluations: the offered
// load (the pool's arrivals per second, smoothed, and a slower average of it for the trend) and one
// replica's capacity (its completions per second while requests waited for it: then it served all it
// could). A queue-length rule overshoots, because a queue grows for as long as demand exceeds capacity:
// the recommendation would rise with the incident's age. Demand over capacity does not.
type demand struct {
	arrivals     float64 // requests/s over the pool, NaN until measured
	arrivalsSlow float64
	capacity     float64 // requests/s one replica serves, NaN until a replica was seen with work waiting
}

func newDemand() *demand {
	return &demand{arrivals: math.NaN(), arrivalsSlow: math.NaN(), capacity: math.NaN()}
}

// trendLag is how much slower the trend's average is than the demand's.
const trendLag = 4

// observe takes one interval of the pool's fresh replicas (dt seconds long).
func (d *demand) observe(p *pool, a AutoscalingConfig, dt float64) {
	if dt <= 0 {
		return
	}
	arrivals, measured := 0.0, 0
	served, saturated := 0.0, 0
	for _, v := range p.views {
		if v.stale {
			continue
		}
		if r := v.interval.ArrivalRate; known(r) {
			arrivals += r
			measured++
		}
		if r := v.interval.FinishedRate; v.interval.Saturated && known(r) && r > 0 {
			served += r
			saturated++
		}
	}
	// Every fresh replica must say its arrivals: a pool's sum with a replica missing understates it.
	if measured > 0 && measured == p.fresh {
		d.arrivals = smooth(d.arrivals, arrivals, dt, a.DemandHalfLife)
		d.arrivalsSlow = smooth(d.arrivalsSlow, arrivals, dt, trendLag*a.DemandHalfLife)
	}
	if saturated > 0 {
		d.capacity = smooth(d.capacity, served/float64(saturated), dt, a.CapacityHalfLife)
	}
}

// smooth is an exponentially weighted average with the half-life; the first value is taken as it is.
func smooth(avg, value, dt float64, halfLife time.Duration) float64 {
	if math.IsNaN(avg) {
		return value
	}
	keep := math.Exp2(-dt / halfLife.Seconds())
	return keep*avg + (1-keep)*value
}

// replicasFor is how many replicas serve this many arrivals per second at the target utilization, and
// drain the pool's current queue within drain_time; NaN before capacity and demand are measured.
func (d *demand) replicasFor(arrivals, waiting float64, a AutoscalingConfig) float64 {
	if !known(d.capacity, arrivals) || d.capacity <= 0 {
		return math.NaN()
	}
	steady := arrivals / (d.capacity * a.TargetUtilization)
	drain := (arrivals + waiting/a.DrainTime.Seconds()) / d.capacity
	return math.Max(steady, drain)
}

// forecastArrivals extends the demand's trend over the horizon. Two averages of a steadily changing rate
// differ by its slope times the difference of their mean ages (half-life / ln 2).
func (d *demand) forecastArrivals(a AutoscalingConfig, horizon time.Duration) float64 {
	if !known(d.arrivals, d.arrivalsSlow) {
		return math.NaN()
	}
	lag := (trendLag - 1) * a.DemandHalfLife.Seconds() / math.Ln2
	slope := (d.arrivals - d.arrivalsSlow) / lag
	return math.Max(0, d.arrivals+slope*horizon.Seconds())
}
