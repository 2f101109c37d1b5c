package fleetsim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// NCCL Inspector output. With Config.NCCLDir set, every replica with tensor parallelism (TP >= 2) writes what
// NCCL 2.30's Inspector profiler plugin writes with NCCL_INSPECTOR_DUMP_VERBOSE=1 and a one-second dump
// interval (NCCL_INSPECTOR_DUMP_THREAD_INTERVAL_MICROSECONDS=1000000): one JSON-lines file per rank process,
// <NCCLDir>/<node>-pid<pid>.log, one compact JSON object per completed collective, in the layout of
// receiver/ncclreceiver/testdata/tp4-straggler (header, metadata, coll_perf with event_trace_sn and
// event_trace_ts).
//
// The model is faithful in its timing and coarse in its operations:
//
//   - Each replica has one communicator spanning its ranks ("TP Group 0", an id of its own, one process per
//     rank on its node, consecutive pids).
//   - Per engine step, one all-reduce per rank stands for all of the step's all-reduces (a real engine runs
//     two per layer, 128 for the default model). Its message is the step's all-reduce bytes in total (two
//     per layer of tokens x hidden x 2 bytes) and its transfer time the step's all-reduce time in total, so
//     bandwidths come out plausible; its sequence number (coll_sn) counts steps.
//   - The host enqueues the step's work when the step launches (coll_start_ts, coll_stop_ts 5 µs later).
//     Each rank's GPU reaches the all-reduce when its own compute for the step is done: kernel_start_ts is
//     the step's launch plus the rank's own compute time (slowed by its clock and, for the straggler, by the
//     scenario's factor), less a few µs of per-rank jitter. The ranks that arrive first wait in the kernel
//     for the last; all finish together, when the last one's transfer is done (kernel_stop_ts, the step's
//     end), and each rank's coll_exec_time_us is that finish minus its own kernel start. A straggler's peers
//     therefore show the straggler's extra compute as both later arrival (for it) and longer execution (for
//     them); with no straggler the kernel starts differ by the jitter alone (under 20 µs).
//   - Timestamps are µs of the wall clock: the fleet's epoch plus simulated time (at speed 1, the wall clock
//     itself). Completed collectives are held as the Inspector's ring holds them and written at each whole
//     simulated second (dump_timestamp_us), one write per line, so a reader never sees half a line and
//     sees a second's collectives within that second; what completed after the last dump is written when
//     the run ends or the fleet is closed (stamped with the next dump's time).
//
// The jitter has a random stream of its own, so writing records changes nothing else a seed decides.

// ncclDumpInterval is the Inspector's dump interval in simulated seconds.
const ncclDumpInterval = 1.0

// ncclOutput is the fleet's Inspector files.
type ncclOutput struct {
	dir      string
	epochUs  int64
	comms    []*ncclComm
	nextDump float64 // simulated time of the next dump
	err      error   // the first write error; writing stops there
	closed   bool
}

// ncclComm is one replica's tensor-parallel communicator and its ranks' files.
type ncclComm struct {
	id, name, host string
	ranks          []*ncclRank
	sn             uint64
	rng            *rand.Rand
	pending        []ncclOp // completed or in flight, in sequence order (and so in finishing order)
}

type ncclRank struct {
	rank int
	pid  int
	path string
	file *os.File
	line []byte // reused
}

// ncclOp is one step's all-reduce as all ranks saw it; times are simulated seconds.
type ncclOp struct {
	sn          uint64
	bytes       uint64
	hostStart   float64
	kernelStart []float64 // per rank
	finish      float64
}

func newNCCLOutput(f *Fleet) (*ncclOutput, error) {
	out := &ncclOutput{dir: f.cfg.NCCLDir, epochUs: f.epoch.UnixMicro(), nextDump: ncclDumpInterval}
	if f.cfg.TP < 2 {
		return out, nil
	}
	if err := os.MkdirAll(out.dir, 0o755); err != nil {
		return nil, fmt.Errorf("nccl dir: %w", err)
	}
	for _, rp := range f.replicas {
		rng := rand.New(rand.NewPCG(f.cfg.Seed, 0x500+uint64(rp.idx)))
		c := &ncclComm{id: fmt.Sprintf("0x%014x", rng.Uint64()>>8), name: "TP Group 0", host: rp.nodeName(), rng: rng}
		base := 2000 + rng.IntN(60000)
		for r := 0; r < rp.tp; r++ {
			rk := &ncclRank{rank: r, pid: base + r}
			rk.path = filepath.Join(out.dir, fmt.Sprintf("%s-pid%d.log", c.host, rk.pid))
			// A new process writes a new file; a rerun with the same seed (the same pids) starts it over.
			file, err := os.OpenFile(rk.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
			if err != nil {
				out.close()
				return nil, fmt.Errorf("nccl file: %w", err)
			}
			rk.file = file
			c.ranks = append(c.ranks, rk)
		}
		rp.nccl = c
		out.comms = append(out.comms, c)
	}
	return out, nil
}

// ncclFiles is the glob of the replica's Inspector files ("" when it writes none).
func (rp *replica) ncclFiles() string {
	if rp.nccl == nil || len(rp.nccl.ranks) == 0 {
		return ""
	}
	return filepath.Join(filepath.Dir(rp.nccl.ranks[0].path), rp.nccl.host+"-pid*.log")
}

// ncclStep records the all-reduce of the step starting at t. own is each rank's compute time for the step,
// overhead the host's share before the GPUs start and transfer the all-reduce's own time; the step ends at
// t + overhead + max(own) + transfer.
func (c *ncclComm) step(m ModelSpec, t, overhead, transfer float64, own []float64, tokens int) {
	c.sn++
	op := ncclOp{sn: c.sn, hostStart: t + overhead/2 + 5e-6*c.rng.Float64(), kernelStart: make([]float64, len(own))}
	// Two all-reduces per layer of the step's activations (bf16), as one message.
	op.bytes = uint64(2 * m.Layers * tokens * m.Hidden * 2)
	last := 0.0
	for r, d := range own {
		op.kernelStart[r] = t + overhead + d - 20e-6*c.rng.Float64()
		last = math.Max(last, op.kernelStart[r])
	}
	op.finish = last + transfer
	c.pending = append(c.pending, op)
}

// dump writes, at simulated time now, every dump due by then; final (the run is over) also writes what
// completed since the last one, stamped with the next dump's time so that the files do not depend on how
// finely the clock was advanced.
func (o *ncclOutput) dump(now float64, final bool) {
	if o.closed {
		return
	}
	for o.nextDump <= now {
		o.write(o.nextDump, o.nextDump)
		o.nextDump += ncclDumpInterval
	}
	if final {
		o.write(now, o.nextDump)
	}
}

// write writes each communicator's collectives that finished by upTo, stamped as dumped at stamp.
func (o *ncclOutput) write(upTo, stamp float64) {
	for _, c := range o.comms {
		n := 0
		for n < len(c.pending) && c.pending[n].finish <= upTo {
			n++
		}
		if n == 0 {
			continue
		}
		for _, rk := range c.ranks {
			for i := range c.pending[:n] {
				rk.line = c.appendRecord(rk.line[:0], rk, &c.pending[i], o.epochUs, stamp)
				if o.err == nil {
					if _, err := rk.file.Write(rk.line); err != nil {
						o.err = fmt.Errorf("nccl file %s: %w", rk.path, err)
					}
				}
			}
		}
		c.pending = append(c.pending[:0], c.pending[n:]...)
	}
}

// close writes what is left and closes the files.
func (o *ncclOutput) close() error {
	if o.closed {
		return o.err
	}
	o.closed = true
	var errs []error
	if o.err != nil {
		errs = append(errs, o.err)
	}
	for _, c := range o.comms {
		for _, rk := range c.ranks {
			if rk.file != nil {
				if err := rk.file.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// appendRecord appends one Inspector record (a 2.30 verbose coll_perf line) for rank rk.
func (c *ncclComm) appendRecord(b []byte, rk *ncclRank, op *ncclOp, epochUs int64, dumpAt float64) []byte {
	us := func(t float64) int64 { return epochUs + int64(math.Round(t*1e6)) }
	start, stop := us(op.kernelStart[rk.rank]), us(op.finish)
	exec := max(1, stop-start)
	algo := float64(op.bytes) / (float64(exec) * 1e-6) / 1e9
	n := len(c.ranks)
	bus := algo * 2 * float64(n-1) / float64(n) // NCCL's all-reduce bus-bandwidth factor
	host := min(us(op.hostStart), start-5)      // the host enqueued it before its kernel could start
	b = fmt.Appendf(b, `{"header":{"id":%q,"comm_name":%q,"rank":%d,"n_ranks":%d,"nnodes":1},`, c.id, c.name, rk.rank, n)
	b = fmt.Appendf(b, `"metadata":{"inspector_output_format_version":"v4.0","git_rev":"","rec_mechanism":"nccl_profiler_interface","dump_timestamp_us":%d,"hostname":%q,"pid":%d},`,
		us(dumpAt), c.host, rk.pid)
	b = fmt.Appendf(b, `"coll_perf":{"coll":"AllReduce","coll_sn":%d,"coll_msg_size_bytes":%d,"coll_exec_time_us":%d,"coll_timing_source":"kernel_gpu",`,
		op.sn, op.bytes, exec)
	b = append(b, `"coll_algobw_gbs":`...)
	b = strconv.AppendFloat(b, algo, 'f', 6, 64)
	b = append(b, `,"coll_busbw_gbs":`...)
	b = strconv.AppendFloat(b, bus, 'f', 6, 64)
	b = append(b, `,"event_trace_sn":{"coll_start_sn":1,"coll_stop_sn":2,"kernel_events":[{"channel_id":0,"kernel_start_sn":3,"kernel_stop_sn":5,"kernel_record_sn":4}]},`...)
	b = fmt.Appendf(b, `"event_trace_ts":{"coll_start_ts":%d,"coll_stop_ts":%d,"kernel_events":[{"channel_id":0,"kernel_start_ts":%d,"kernel_stop_ts":%d,"kernel_record_ts":%d}]}}}`+"\n",
		host, host+5, start, stop, stop)
	return b
}
