package fleetsim

import (
	"fmt"
	"math"
)

// NVML's clock-event (throttle) reason bits, as dcgm-exporter reports them in one bitmask.
const (
	throttleGPUIdle     = 0x1
	throttleSwThermal   = 0x20
	throttleHwThermal   = 0x40
	tempTimeConstant    = 20.0 // seconds for the die temperature to settle
	utilizationWindow   = 1.0  // seconds NVML averages utilization over
	ambientTemperature  = 28.0
	thermalSlowdownTemp = 88.0
)

// gpuSample is a GPU's cumulative activity at the end of a step.
type gpuSample struct {
	t, busy, sm, tensor, dram float64
}

// gpu is one accelerator of a replica. Its activity accumulates as steps end; readings at a time t are
// computed from that state without changing it, so scraping never alters the simulation.
type gpu struct {
	index   int
	uuid    string
	pciBus  string
	clock   float64 // current SM clock as a share of the maximum (1 unless throttled)
	reasons uint64  // throttle reasons in force (without the idle bit, which readings add)

	busy, sm, tensor, dram float64 // cumulative seconds: kernels running, own compute, tensor pipes, DRAM
	energy                 float64 // joules since the simulated driver loaded
	lastT                  float64 // end of the last step accounted
	power                  float64 // watts of the last step
	temp, tempT            float64 // die temperature at tempT
	samples                []gpuSample
}

func newGPU(spec GPUSpec, replica, index int, rngID uint64) *gpu {
	return &gpu{
		index:  index,
		uuid:   fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x", uint32(rngID), replica, index, uint16(rngID>>32), rngID>>16),
		pciBus: fmt.Sprintf("00000000:%02X:00.0", 0x18+index*0x10),
		clock:  1,
		power:  spec.IdleWatts,
		temp:   ambientTemperature + 0.065*spec.IdleWatts,
	}
}

// tempAt is the die temperature at t, relaxing from the last known value toward what the current power
// and cooling settle at.
func (g *gpu) tempAt(t, power float64) float64 {
	target := ambientTemperature + 0.065*power
	if g.reasons&(throttleSwThermal|throttleHwThermal) != 0 {
		// The fault is cooling that no longer keeps up: the die sits at the slowdown temperature, however
		// far the clocks (and the power) come down.
		target = thermalSlowdownTemp
	}
	return target + (g.temp-target)*math.Exp(-(t-g.tempT)/tempTimeConstant)
}

// account adds one step: [start, end] with the rank's own compute and memory time (before clock scaling)
// and the all-reduce it waited in.
func (g *gpu) account(spec GPUSpec, start, end, overhead, compute, mem float64) {
	idle := math.Max(0, start-g.lastT)
	g.energy += idle * spec.IdleWatts
	dt := end - start
	kernels := math.Max(0, dt-overhead)
	own := math.Min(kernels, math.Max(compute, mem)/g.clock)
	g.busy += kernels // NCCL's spinning all-reduce kernels count as busy, as NVML sees them
	g.sm += own
	if m := math.Max(compute, mem); m > 0 {
		g.tensor += own * compute / m
		g.dram += own * mem / m
	}
	activity := 0.0
	if dt > 0 {
		activity = own/dt*(0.55+0.45*safeDiv(compute, math.Max(compute, mem))) + (kernels-own)/dt*0.25
	}
	g.power = spec.IdleWatts + (spec.TDPWatts-spec.IdleWatts)*activity*math.Pow(g.clock, 1.5)
	g.energy += dt * g.power
	g.temp = g.tempAt(start, spec.IdleWatts) // cooled while idle
	g.tempT = start
	g.temp = g.tempAt(end, g.power)
	g.tempT = end
	g.lastT = end
	g.samples = append(g.samples, gpuSample{t: end, busy: g.busy, sm: g.sm, tensor: g.tensor, dram: g.dram})
	// Keep a little more than one window of samples.
	if len(g.samples) > 64 && g.samples[len(g.samples)/2].t < end-2*utilizationWindow {
		g.samples = append(g.samples[:0], g.samples[len(g.samples)/2:]...)
	}
}

// gpuReading is what dcgm-exporter would report at one moment.
type gpuReading struct {
	util, sm, tensor, dram  float64 // ratios over the last window
	smClockMHz, memClockMHz int
	powerW, energyJ         float64
	temp, memTemp           float64
	reasons                 uint64
}

func (g *gpu) read(spec GPUSpec, t float64) gpuReading {
	var r gpuReading
	if n := len(g.samples); n > 0 && g.samples[n-1].t > t-utilizationWindow {
		last := g.samples[n-1]
		first := gpuSample{t: t - utilizationWindow}
		for i := n - 1; i >= 0; i-- {
			if g.samples[i].t <= t-utilizationWindow {
				first = g.samples[i]
				break
			}
			if i == 0 {
				first = gpuSample{t: t - utilizationWindow, busy: g.samples[0].busy, sm: g.samples[0].sm, tensor: g.samples[0].tensor, dram: g.samples[0].dram}
			}
		}
		span := t - first.t
		r.util = clamp01((last.busy - first.busy) / span)
		r.sm = clamp01((last.sm - first.sm) / span)
		r.tensor = clamp01((last.tensor - first.tensor) / span)
		r.dram = clamp01((last.dram - first.dram) / span)
	}
	busy := r.util > 0.01
	r.reasons = g.reasons
	r.powerW = spec.IdleWatts
	r.smClockMHz = spec.IdleSMClock
	if busy {
		r.powerW = spec.IdleWatts + (g.power-spec.IdleWatts)*r.util
		r.smClockMHz = int(math.Round(float64(spec.MaxSMClockMHz) * g.clock))
	} else {
		r.reasons |= throttleGPUIdle
	}
	r.memClockMHz = spec.MemClockMHz
	r.energyJ = g.energy + math.Max(0, t-g.lastT)*spec.IdleWatts
	r.temp = g.tempAt(t, r.powerW)
	r.memTemp = r.temp + 4
	return r
}

func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
