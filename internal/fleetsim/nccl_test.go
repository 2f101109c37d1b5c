package fleetsim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ncclRecord is what the nccl receiver reads from an Inspector line (receiver/ncclreceiver/parse.go), plus
// the timestamps this test checks.
type ncclRecord struct {
	Header struct {
		ID       string `json:"id"`
		CommName string `json:"comm_name"`
		Rank     *int   `json:"rank"`
		NRanks   *int   `json:"n_ranks"`
	} `json:"header"`
	Metadata struct {
		Version  string `json:"inspector_output_format_version"`
		DumpUs   int64  `json:"dump_timestamp_us"`
		Hostname string `json:"hostname"`
		PID      int64  `json:"pid"`
	} `json:"metadata"`
	Coll *struct {
		Coll   string   `json:"coll"`
		SN     uint64   `json:"coll_sn"`
		Bytes  uint64   `json:"coll_msg_size_bytes"`
		ExecUs *float64 `json:"coll_exec_time_us"`
		Timing string   `json:"coll_timing_source"`
		AlgoBW float64  `json:"coll_algobw_gbs"`
		BusBW  float64  `json:"coll_busbw_gbs"`
		Trace  *struct {
			CollStart int64 `json:"coll_start_ts"`
			CollStop  int64 `json:"coll_stop_ts"`
			Kernels   []struct {
				Start  int64 `json:"kernel_start_ts"`
				Stop   int64 `json:"kernel_stop_ts"`
				Record int64 `json:"kernel_record_ts"`
			} `json:"kernel_events"`
		} `json:"event_trace_ts"`
	} `json:"coll_perf"`
}

// ncclFile is one rank process' file.
type ncclFile struct {
	path    string
	host    string
	pid     int64
	records []ncclRecord
	raw     [][]byte
}

var ncclName = regexp.MustCompile(`^(sim-node-\d+)-pid(\d+)\.log$`)

// readNCCL reads every Inspector file in dir, by host, in rank order.
func readNCCL(t *testing.T, dir string) map[string][]*ncclFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	out := map[string][]*ncclFile{}
	for _, p := range paths {
		m := ncclName.FindStringSubmatch(filepath.Base(p))
		require.NotNil(t, m, "unexpected file %s", p)
		pid, _ := strconv.ParseInt(m[2], 10, 64)
		f := &ncclFile{path: p, host: m[1], pid: pid}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.True(t, len(b) == 0 || b[len(b)-1] == '\n', "%s ends mid-line", p)
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := append([]byte(nil), sc.Bytes()...)
			var rec ncclRecord
			require.NoError(t, json.Unmarshal(line, &rec), "%s: %s", p, line)
			f.records = append(f.records, rec)
			f.raw = append(f.raw, line)
		}
		out[f.host] = append(out[f.host], f)
	}
	for _, fs := range out {
		sort.Slice(fs, func(i, j int) bool { return fs[i].pid < fs[j].pid })
	}
	return out
}

func ncclConfig(t *testing.T, scenario string) Config {
	cfg := testConfig(t, scenario)
	cfg.Duration, cfg.Drain = 30*time.Second, 10*time.Second
	cfg.NCCLDir = t.TempDir()
	return cfg
}

// keyPaths lists every key of a JSON object, nested keys as paths.
func keyPaths(t *testing.T, line []byte) []string {
	var v any
	require.NoError(t, json.Unmarshal(line, &v))
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				out = append(out, prefix+k)
				walk(prefix+k+".", c)
			}
		case []any:
			for _, c := range x {
				walk(prefix+"[].", c)
			}
		}
	}
	walk("", v)
	sort.Strings(out)
	return out
}

// The files have the Inspector's layout and the fields the nccl receiver reads, consistently.
func TestNCCLRecordsAsTheInspectorWritesThem(t *testing.T) {
	cfg := ncclConfig(t, "tp_imbalance")
	f, err := New(cfg)
	require.NoError(t, err)
	f.RunToEnd()
	require.NoError(t, f.Close())

	fixture, err := os.ReadFile("../../receiver/ncclreceiver/testdata/tp4-straggler/node-a-pid4101.log")
	require.NoError(t, err)
	want := keyPaths(t, fixture[:bytes.IndexByte(fixture, '\n')])

	files := readNCCL(t, cfg.NCCLDir)
	require.Len(t, files, len(cfg.Engines), "one host per replica")
	ids := map[string]bool{}
	epochUs := cfg.Epoch.UnixMicro()
	for i := range cfg.Engines {
		host := fmt.Sprintf("sim-node-%d", i)
		ranks := files[host]
		require.Len(t, ranks, 2, "%s: one file per rank (TP 2)", host)
		require.NotEmpty(t, ranks[0].records)
		assert.Equal(t, ranks[0].pid+1, ranks[1].pid, "consecutive pids")
		assert.Len(t, ranks[1].records, len(ranks[0].records), "every rank records every collective")
		id := ranks[0].records[0].Header.ID
		assert.False(t, ids[id], "a communicator id per replica")
		ids[id] = true
		for r, file := range ranks {
			lastDump := int64(0)
			for n, rec := range file.records {
				if n == 0 {
					assert.Equal(t, want, keyPaths(t, file.raw[n]), "the fixture's layout")
				}
				require.NotNil(t, rec.Header.Rank)
				require.NotNil(t, rec.Header.NRanks)
				require.NotNil(t, rec.Coll)
				require.NotNil(t, rec.Coll.ExecUs)
				require.NotNil(t, rec.Coll.Trace)
				require.Len(t, rec.Coll.Trace.Kernels, 1)
				assert.Equal(t, id, rec.Header.ID)
				assert.Equal(t, "TP Group 0", rec.Header.CommName)
				assert.Equal(t, r, *rec.Header.Rank)
				assert.Equal(t, 2, *rec.Header.NRanks)
				assert.Equal(t, "v4.0", rec.Metadata.Version)
				assert.Equal(t, host, rec.Metadata.Hostname)
				assert.Equal(t, file.pid, rec.Metadata.PID)
				assert.Equal(t, "AllReduce", rec.Coll.Coll)
				assert.Equal(t, "kernel_gpu", rec.Coll.Timing)
				assert.Equal(t, uint64(n+1), rec.Coll.SN, "coll_sn counts the communicator's collectives")
				assert.Positive(t, rec.Coll.Bytes)
				k := rec.Coll.Trace.Kernels[0]
				assert.Greater(t, k.Start, epochUs)
				assert.Less(t, rec.Coll.Trace.CollStart, rec.Coll.Trace.CollStop)
				assert.LessOrEqual(t, rec.Coll.Trace.CollStop, k.Start, "enqueued before its kernel starts")
				assert.Equal(t, float64(k.Stop-k.Start), *rec.Coll.ExecUs, "exec time is the kernel's")
				assert.Equal(t, k.Stop, k.Record)
				assert.InDelta(t, float64(rec.Coll.Bytes)/(*rec.Coll.ExecUs*1e3), rec.Coll.AlgoBW, 1e-5)
				assert.InDelta(t, rec.Coll.AlgoBW, rec.Coll.BusBW, 1e-5, "2(n-1)/n is 1 for two ranks")
				assert.GreaterOrEqual(t, rec.Metadata.DumpUs, k.Stop, "dumped after it completed")
				assert.Less(t, rec.Metadata.DumpUs-k.Stop, int64(1e6)+1, "within a dump interval")
				assert.Zero(t, (rec.Metadata.DumpUs-epochUs)%1e6, "dumps every simulated second")
				assert.GreaterOrEqual(t, rec.Metadata.DumpUs, lastDump)
				lastDump = rec.Metadata.DumpUs
				other := ranks[1-r].records[n]
				assert.Equal(t, k.Stop, other.Coll.Trace.Kernels[0].Stop, "ranks finish together")
				assert.Equal(t, rec.Coll.Bytes, other.Coll.Bytes)
			}
		}
	}
}

// A straggler rank reaches each all-reduce later than its peer by its extra compute, and its peer's kernel
// runs that much longer; with no straggler, the ranks arrive within microseconds of each other.
func TestNCCLStragglerArrivesLate(t *testing.T) {
	cfg := ncclConfig(t, "tp_imbalance")
	f, err := New(cfg)
	require.NoError(t, err)
	f.RunToEnd()
	require.NoError(t, f.Close())
	files := readNCCL(t, cfg.NCCLDir)
	epochUs := cfg.Epoch.UnixMicro()
	from := epochUs + int64(f.sc.Start*f.dur*1e6)
	to := epochUs + int64(f.sc.End*f.dur*1e6)
	overheadUs := cfg.Engine.StepOverhead * 1e6
	extra := f.sc.StragglerFactor - 1

	for i := range cfg.Engines {
		ranks := files[fmt.Sprintf("sim-node-%d", i)]
		var during, checked, outside int
		skewSum := 0.0
		maxQuiet := 0.0
		for n := 1; n < len(ranks[0].records); n++ {
			k0, k1 := ranks[0].records[n].Coll.Trace.Kernels[0], ranks[1].records[n].Coll.Trace.Kernels[0]
			skew := float64(k1.Start - k0.Start)
			exec0, exec1 := *ranks[0].records[n].Coll.ExecUs, *ranks[1].records[n].Coll.ExecUs
			assert.InDelta(t, skew, exec0-exec1, 0.5, "the early rank waits in its kernel for the late one")
			// The step began when the previous one ended (the replica is busy), and the GPUs started after
			// the host's overhead: rank 0's own compute is what remains until its kernel started.
			prevStop := ranks[0].records[n-1].Coll.Trace.Kernels[0].Stop
			stepStart := ranks[0].records[n].Coll.Trace.CollStart - int64(overheadUs/2) - 5
			busy := stepStart-prevStop < 100 // back to back
			if i == 0 && k0.Start > from+int64(1e5) && k1.Stop < to {
				during++
				if busy {
					own0 := float64(k0.Start-prevStop) - overheadUs
					assert.InDelta(t, extra*own0, skew, 300+0.05*extra*own0, "collective %d: rank 1 late by %g x rank 0's compute", n+1, extra)
					checked++
					skewSum += skew
				}
				continue
			}
			if k0.Start < from-int64(1e5) || k0.Start > to+int64(2e6) || i != 0 {
				outside++
				maxQuiet = math.Max(maxQuiet, math.Abs(skew))
			}
		}
		if i == 0 {
			assert.Greater(t, during, 100, "collectives during the fault")
			assert.Greater(t, checked, during/2, "most of them back to back")
			t.Logf("replica 0: %d collectives during the fault, mean arrival skew %.1f ms", during, skewSum/float64(max(1, checked))/1e3)
		}
		assert.Greater(t, outside, 100)
		assert.LessOrEqual(t, maxQuiet, 21.0, "sim-node-%d: no straggler, no more than jitter (20 µs, rounded)", i)
	}
}

// Writing Inspector files changes nothing else a seed decides, and the files themselves are the same for a
// seed however finely the clock advances.
func TestNCCLDeterministic(t *testing.T) {
	plain := runScenario(t, "tp_imbalance").GroundTruth()

	cfg := testConfig(t, "tp_imbalance")
	cfg.NCCLDir = t.TempDir()
	a, err := New(cfg)
	require.NoError(t, err)
	a.RunToEnd()
	require.NoError(t, a.Close())
	assert.True(t, reflect.DeepEqual(plain, a.GroundTruth()), "the ground truth changed with NCCL files on")

	cfg2 := cfg
	cfg2.NCCLDir = t.TempDir()
	b, err := New(cfg2)
	require.NoError(t, err)
	for v := 0.0; !b.Done(); v += 0.0137 {
		b.Advance(v)
	}
	require.NoError(t, b.Close())
	fa, fb := readNCCL(t, cfg.NCCLDir), readNCCL(t, cfg2.NCCLDir)
	require.Len(t, fb, len(fa))
	for host, ranks := range fa {
		for r, file := range ranks {
			x, err := os.ReadFile(file.path)
			require.NoError(t, err)
			y, err := os.ReadFile(fb[host][r].path)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(x, y), "%s differs when the clock advances in small steps", filepath.Base(file.path))
		}
	}
}

// Replicas without tensor parallelism write nothing; with it, each replica's endpoint names its files.
func TestNCCLOnlyWithTensorParallelism(t *testing.T) {
	for _, tp := range []int{1, 2} {
		cfg := testConfig(t, "baseline")
		cfg.Duration, cfg.Drain = 3*time.Second, time.Second
		cfg.TP = tp
		cfg.NCCLDir = t.TempDir()
		f, err := New(cfg)
		require.NoError(t, err)
		eps, err := f.Serve("127.0.0.1", 0)
		require.NoError(t, err)
		f.RunToEnd()
		require.NoError(t, f.Close())
		entries, err := os.ReadDir(cfg.NCCLDir)
		require.NoError(t, err)
		if tp == 1 {
			assert.Empty(t, entries)
			assert.Empty(t, eps[0].NCCLFiles)
			continue
		}
		assert.Len(t, entries, 2*len(eps))
		for _, ep := range eps {
			matched, err := filepath.Glob(ep.NCCLFiles)
			require.NoError(t, err)
			assert.Len(t, matched, 2, "%s: its own two files", ep.NCCLFiles)
		}
	}
}
