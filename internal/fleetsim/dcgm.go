package fleetsim

import (
	"fmt"
	"math"
	"strconv"
)

// dcgm-exporter as it runs on each replica's node in Kubernetes mode: one series per GPU, labelled gpu,
// UUID, pci_bus_id, device, modelName, hostname and the driver version, plus the pod, namespace and
// container of the engine using it (the pod is the replica's name, which is how GPU metrics join replicas).

const (
	dcgmDriverVersion = "550.127.05"
	dcgmNamespace     = "servescope-sim"
)

func (rp *replica) dcgmMetrics(now float64) []byte {
	f := rp.f
	spec := f.cfg.GPU
	e := &expo{style: styleDCGM}
	type gpuLine struct {
		labels []label
		r      gpuReading
		g      *gpu
	}
	var lines []gpuLine
	for _, g := range rp.gpus {
		lines = append(lines, gpuLine{g: g, r: g.read(spec, now), labels: []label{
			{"gpu", strconv.Itoa(g.index)},
			{"UUID", g.uuid},
			{"pci_bus_id", g.pciBus},
			{"device", fmt.Sprintf("nvidia%d", g.index)},
			{"modelName", spec.Name},
			{"hostname", rp.nodeName()},
			{"DCGM_FI_DRIVER_VERSION", dcgmDriverVersion},
			{"container", shortEngine(rp.engine)},
			{"namespace", dcgmNamespace},
			{"pod", rp.name},
		}})
	}
	totalMiB := float64(spec.MemoryMiB)
	reservedMiB := 520.0 // driver and ECC reservation
	family := func(name, typ, help string, value func(l gpuLine) float64) {
		e.header(name, typ, help)
		for _, l := range lines {
			e.sample(name, l.labels, value(l))
		}
	}
	// Fields DCGM stores as doubles print with six decimals even when whole.
	doubles := func(name, help string, value func(l gpuLine) float64) {
		e.style = styleDCGMDouble
		family(name, "gauge", help, value)
		e.style = styleDCGM
	}
	family("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", func(l gpuLine) float64 { return float64(l.r.smClockMHz) })
	family("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", func(l gpuLine) float64 { return float64(l.r.memClockMHz) })
	family("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", func(l gpuLine) float64 { return math.Round(l.r.memTemp) })
	family("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", func(l gpuLine) float64 { return math.Round(l.r.temp) })
	doubles("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", func(l gpuLine) float64 { return l.r.powerW })
	doubles("DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W).", func(gpuLine) float64 { return spec.TDPWatts })
	family("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).", func(l gpuLine) float64 { return math.Floor(l.r.energyJ * 1000) })
	family("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", func(gpuLine) float64 { return 0 })
	family("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", func(l gpuLine) float64 { return math.Round(l.r.util * 100) })
	family("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", func(l gpuLine) float64 { return math.Round(l.r.dram * 100) })
	family("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", func(gpuLine) float64 { return 0 })
	used := func(gpuLine) float64 {
		return math.Round(float64(rp.gpuMemUsedBytes())/(1<<20)) + 600 // + CUDA context
	}
	family("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", func(l gpuLine) float64 { return totalMiB - reservedMiB - used(l) })
	family("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", used)
	family("DCGM_FI_DEV_FB_TOTAL", "gauge", "Total framebuffer memory (in MiB).", func(gpuLine) float64 { return totalMiB })
	family("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).", func(gpuLine) float64 { return reservedMiB })
	family("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "gauge", "Current clock throttle reasons (bitmask).", func(l gpuLine) float64 { return float64(l.r.reasons) })
	family("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Rows remapped for correctable errors.", func(gpuLine) float64 { return 0 })
	family("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Rows remapped for uncorrectable errors.", func(gpuLine) float64 { return 0 })
	family("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed.", func(gpuLine) float64 { return 0 })
	doubles("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.", func(l gpuLine) float64 { return l.r.util })
	doubles("DCGM_FI_PROF_SM_ACTIVE", "Ratio of cycles an SM has at least one warp assigned.", func(l gpuLine) float64 { return l.r.sm })
	doubles("DCGM_FI_PROF_SM_OCCUPANCY", "Ratio of warps resident to the maximum per SM.", func(l gpuLine) float64 { return l.r.sm * 0.4 })
	doubles("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor pipe is active.", func(l gpuLine) float64 { return l.r.tensor * 0.7 })
	doubles("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active.", func(l gpuLine) float64 { return l.r.dram })
	// Inference moves little over PCIe once the weights are loaded: token ids in, logits' argmax out.
	family("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", "Bytes per second transmitted over PCIe.", func(l gpuLine) float64 { return math.Round(l.r.util * 2.1e6) })
	family("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", "Bytes per second received over PCIe.", func(l gpuLine) float64 { return math.Round(l.r.util * 3.4e6) })
	return e.b.Bytes()
}
