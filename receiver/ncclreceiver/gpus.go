package ncclreceiver

import (
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.uber.org/zap"
)

// gpuRef is the GPU a process runs on, as NVML names it (the same hw.id the nvml receiver sets).
type gpuRef struct {
	uuid  string
	index int
}

// gpuLocator ties a process to its GPU. JSON records name their process (pid) but not their GPU; the
// Prometheus textfiles name the GPU in their file name and need no lookup.
type gpuLocator interface {
	// lookup returns the GPU of pid; interval lets an implementation refresh its table once per interval.
	lookup(pid int64, interval uint64) (gpuRef, bool)
	close()
}

// nvmlLocator asks NVML which processes run on which GPU. It initializes NVML on first use; without a
// driver it says so once and finds nothing, and the records go out without hw.id.
type nvmlLocator struct {
	lib    nvml.Interface
	logger *zap.Logger

	once    sync.Once
	ok      bool
	table   map[int64]gpuRef
	fetched uint64
}

func newNVMLLocator(lib nvml.Interface, logger *zap.Logger) *nvmlLocator {
	return &nvmlLocator{lib: lib, logger: logger}
}

func (l *nvmlLocator) lookup(pid int64, interval uint64) (gpuRef, bool) {
	l.once.Do(func() {
		if ret := l.lib.Init(); ret != nvml.SUCCESS {
			l.logger.Warn("NVML unavailable: NCCL records are reported without their GPU (hw.id)", zap.String("nvml", nvml.ErrorString(ret)))
			return
		}
		l.ok = true
	})
	if !l.ok {
		return gpuRef{}, false
	}
	if g, ok := l.table[pid]; ok {
		return g, g.uuid != ""
	}
	if l.table != nil && l.fetched == interval {
		return gpuRef{}, false
	}
	l.fetched = interval
	l.table = map[int64]gpuRef{}
	n, ret := l.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return gpuRef{}, false
	}
	for i := 0; i < n; i++ {
		dev, ret := l.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		uuid, ret := dev.GetUUID()
		if ret != nvml.SUCCESS {
			continue
		}
		procs, ret := dev.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS {
			continue
		}
		for _, p := range procs {
			if prev, seen := l.table[int64(p.Pid)]; seen && prev.uuid != uuid {
				// One process driving several GPUs (nccl-tests -g 8, ncclCommInitAll): which rank is on
				// which GPU cannot be told from the pid, so none is claimed.
				l.table[int64(p.Pid)] = gpuRef{}
				continue
			}
			l.table[int64(p.Pid)] = gpuRef{uuid: uuid, index: i}
		}
	}
	g, ok := l.table[pid]
	return g, ok && g.uuid != ""
}

func (l *nvmlLocator) close() {
	if l.ok {
		_ = l.lib.Shutdown()
		l.ok = false
	}
}
