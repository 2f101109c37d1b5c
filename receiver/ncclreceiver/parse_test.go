package ncclreceiver

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's "Output Example" (NCCL 2.28.3 to 2.30), compacted to one line as the Inspector writes it.
const readmeExample = `{"header":{"id":"0x7f8c496ae9f661","rank":2,"n_ranks":8,"nnodes":1},"metadata":{"inspector_output_format_version":"v4.0","git_rev":"","rec_mechanism":"profiler_plugin","dump_timestamp_us":1748030377748202,"hostname":"example-hostname","pid":1639453},"coll_perf":{"coll":"AllReduce","coll_sn":1407,"coll_msg_size_bytes":17179869184,"coll_exec_time_us":61974,"coll_algobw_gbs":277.210914,"coll_busbw_gbs":485.119099}}`

func TestParseReadmeExample(t *testing.T) {
	o, err := parseRecord([]byte(readmeExample))
	require.NoError(t, err)
	assert.Equal(t, "0x7f8c496ae9f661", o.commID)
	assert.Equal(t, "0x7f8c496ae9f661", o.communicator(), "no comm_name before NCCL 2.30")
	assert.Equal(t, 2, o.rank)
	assert.Equal(t, 8, o.nranks)
	assert.Equal(t, "example-hostname", o.host)
	assert.Equal(t, int64(1639453), o.pid)
	assert.Equal(t, "AllReduce", o.name)
	assert.Equal(t, uint64(1407), o.seq)
	assert.Equal(t, uint64(17179869184), o.msgBytes)
	assert.Equal(t, 61974.0, o.execUs)
	assert.Empty(t, o.timing)
	assert.InDelta(t, 485.119099, o.busGBs, 1e-9)
	assert.Equal(t, uint64(0), o.startUs, "not verbose: no arrival time")
	assert.False(t, o.p2p)
	assert.Equal(t, "16GiB-32GiB", sizeBucket(o.msgBytes))
}

func TestParseVerboseTakesTheFirstKernelStart(t *testing.T) {
	rec := `{"header":{"id":"0xe6","comm_name":"TP Group 0","rank":4,"n_ranks":8,"nnodes":1},"metadata":{"hostname":"h","pid":1},` +
		`"coll_perf":{"coll":"ReduceScatter","coll_sn":1231,"coll_msg_size_bytes":2147483648,"coll_exec_time_us":41057,"coll_timing_source":"kernel_gpu","coll_algobw_gbs":418.439467,"coll_busbw_gbs":"nan",` +
		`"event_trace_ts":{"coll_start_ts":1752867229235059,"coll_stop_ts":1752867229235064,"kernel_events":[` +
		`{"channel_id":0,"kernel_start_ts":1752867229235190,"kernel_stop_ts":1752867229275811,"kernel_record_ts":1752867229275811},` +
		`{"channel_id":1,"kernel_start_ts":1752867229235181,"kernel_stop_ts":1752867229275811,"kernel_record_ts":1752867229275811},` +
		`{"channel_id":2,"kernel_start_ts":0,"kernel_stop_ts":0,"kernel_record_ts":0}]}}}`
	o, err := parseRecord([]byte(rec))
	require.NoError(t, err)
	assert.Equal(t, uint64(1752867229235181), o.startUs)
	assert.Equal(t, "TP Group 0", o.communicator())
	assert.True(t, math.IsNaN(o.busGBs), `the Inspector prints a NaN double as "nan"`)
	assert.Equal(t, "kernel_gpu", o.timing)

	// Without kernel events the host-side start stands in.
	noKernels := strings.Replace(rec, `"kernel_events":[`, `"kernel_events":[],"x":[`, 1)
	o, err = parseRecord([]byte(noKernels))
	require.NoError(t, err)
	assert.Equal(t, uint64(1752867229235059), o.startUs)
}

func TestParseP2P(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "tp2pp2-idle-stage", "node-b-pid5203.log"))
	require.NoError(t, err)
	first := bytes.SplitN(b, []byte("\n"), 3)[1]
	o, err := parseRecord(first)
	require.NoError(t, err)
	assert.True(t, o.p2p)
	assert.Equal(t, "Recv", o.name)
	assert.Equal(t, 0, o.peer)
	assert.Equal(t, 9000.0, o.execUs)
}

func TestParseRejects(t *testing.T) {
	for name, line := range map[string]string{
		"cut":             readmeExample[:len(readmeExample)/2],
		"log line":        "NCCL INFO Inspector: dump thread started",
		"empty object":    "{}",
		"no perf":         `{"header":{"id":"0x1","rank":0,"n_ranks":1}}`,
		"rank too high":   strings.Replace(readmeExample, `"rank":2`, `"rank":8`, 1),
		"negative rank":   strings.Replace(readmeExample, `"rank":2`, `"rank":-1`, 1),
		"no exec time":    strings.Replace(readmeExample, `"coll_exec_time_us":61974,`, ``, 1),
		"negative time":   strings.Replace(readmeExample, `"coll_exec_time_us":61974`, `"coll_exec_time_us":-5`, 1),
		"wrong type":      strings.Replace(readmeExample, `"coll_sn":1407`, `"coll_sn":"x"`, 1),
		"bare inf":        strings.Replace(readmeExample, `485.119099`, `inf`, 1),
		"no op name":      strings.Replace(readmeExample, `"coll":"AllReduce"`, `"coll":""`, 1),
		"array, not obj":  "[1,2,3]",
		"header not obj":  `{"header":3,"coll_perf":{}}`,
		"huge rank count": strings.Replace(readmeExample, `"n_ranks":8`, `"n_ranks":99999999`, 1),
	} {
		_, err := parseRecord([]byte(line))
		assert.Error(t, err, name)
	}
}

func TestSizeBucketBoundsEverySize(t *testing.T) {
	assert.Equal(t, "0B", sizeBucket(0))
	assert.Equal(t, "1B-2B", sizeBucket(1))
	assert.Equal(t, "512B-1KiB", sizeBucket(1000))
	assert.Equal(t, "8KiB-16KiB", sizeBucket(8192))
	assert.Equal(t, "8KiB-16KiB", sizeBucket(16383))
	assert.Equal(t, "16KiB-32KiB", sizeBucket(16384))
	assert.Equal(t, "8EiB+", sizeBucket(math.MaxUint64))
	// Every range of the Inspector's own Prometheus labels ([k, k+1) units) falls in one bucket.
	for _, unit := range []uint64{1, 1 << 10, 1 << 20, 1 << 30} {
		for k := uint64(1); k < 1024; k++ {
			assert.Equal(t, sizeBucket(k*unit), sizeBucket((k+1)*unit-1), "%d units of %d", k, unit)
		}
	}
}

func TestSizeLabels(t *testing.T) {
	for label, want := range map[string]uint64{"4-5GB": 4 << 30, "512-513MB": 512 << 20, "1-2KB": 1 << 10, "0B": 0, "512B": 512, "2.00GB": 2 << 30, "1.50MB": 3 << 19} {
		got, ok := parseSizeLabel(label)
		assert.True(t, ok, label)
		assert.Equal(t, want, got, label)
	}
	for _, bad := range []string{"", "GB", "4-GB", "4-5XB", "-1MB", "1e999GB"} {
		_, ok := parseSizeLabel(bad)
		assert.False(t, ok, bad)
	}
}

func TestGPUFromPromFile(t *testing.T) {
	assert.Equal(t, "GPU-6b1c2f3e-9a4d-4e21-8c7f-0d5e4b3a2910", gpuFromPromFile("/x/nccl_inspector_metrics_6B1C2F3E-9A4D-4E21-8C7F-0D5E4B3A2910.prom"))
	assert.Empty(t, gpuFromPromFile("/x/other.prom"))
}

// FuzzParseRecord: any line either parses into a sensible operation or is rejected; nothing panics.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(readmeExample))
	for _, dir := range []string{"tp4-straggler", "tp2pp2-idle-stage", "v2.28-two-hosts"} {
		entries, _ := os.ReadDir(filepath.Join("testdata", dir))
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join("testdata", dir, e.Name()))
			lines, _ := splitLines(b)
			if len(lines) > 0 {
				f.Add(lines[0])
			}
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		o, err := parseRecord(line)
		if err != nil {
			return
		}
		if o.rank < 0 || o.rank >= o.nranks || o.nranks > maxRanks {
			t.Fatalf("impossible rank %d of %d accepted", o.rank, o.nranks)
		}
		if o.execUs < 0 || math.IsNaN(o.execUs) || math.IsInf(o.execUs, 0) {
			t.Fatalf("unusable execution time %v accepted", o.execUs)
		}
		if o.name == "" || o.commID == "" {
			t.Fatal("record without operation or communicator accepted")
		}
		_ = sizeBucket(o.msgBytes)
	})
}

// FuzzParsePromFile: any body yields only finite, non-negative samples with an operation; nothing panics.
func FuzzParsePromFile(f *testing.F) {
	entries, _ := os.ReadDir(filepath.Join("testdata", "prom"))
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join("testdata", "prom", e.Name()))
		f.Add(b)
	}
	f.Add([]byte("nccl_bus_bandwidth_gbs{collective=\"AllReduce\",message_size=\"1-2KB\"} NaN\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		pts, bad, _ := parsePromFile(body)
		if bad < 0 {
			t.Fatal("negative error count")
		}
		for _, p := range pts {
			if p.name == "" || p.value < 0 || math.IsNaN(p.value) || math.IsInf(p.value, 0) {
				t.Fatalf("bad sample accepted: %+v", p)
			}
		}
	})
}
