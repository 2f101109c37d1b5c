package ncclreceiver

import (
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/stretchr/testify/assert"
	"go.uber.org/zap"
)

func TestNVMLLocator(t *testing.T) {
	srv := dgxh100.New()
	procs := map[int][]nvml.ProcessInfo{
		1: {{Pid: 101}},
		2: {{Pid: 102}, {Pid: 900}},
		3: {{Pid: 900}}, // one process on two GPUs (nccl-tests -g 2)
	}
	calls := 0
	for i, d := range srv.Devices {
		d.(*server.Device).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			calls++
			return procs[i], nvml.SUCCESS
		}
	}
	l := newNVMLLocator(srv, zap.NewNop())
	g, ok := l.lookup(102, 1)
	assert.True(t, ok)
	assert.Equal(t, 2, g.index)
	assert.Equal(t, srv.Devices[2].(*server.Device).UUID, g.uuid)
	_, ok = l.lookup(900, 1)
	assert.False(t, ok, "a process on two GPUs is not placed on either")
	before := calls
	_, ok = l.lookup(555, 1)
	assert.False(t, ok)
	assert.Equal(t, before, calls, "an unknown pid does not re-query NVML within the interval")
	procs[4] = []nvml.ProcessInfo{{Pid: 555}} // it started on GPU 4 since
	g, ok = l.lookup(555, 2)
	assert.True(t, ok)
	assert.Equal(t, 4, g.index)
	l.close()
}
