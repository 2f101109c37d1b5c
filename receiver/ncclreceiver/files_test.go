package ncclreceiver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/ncclreceiver/internal/metadata"
)

// line is a minimal record of communicator c: rank 0 of 1, collective number sn.
func line(pid, sn int) string {
	return `{"header":{"id":"0xabc","rank":0,"n_ranks":1,"nnodes":1},"metadata":{"hostname":"h","pid":` + u64(uint64(pid)) +
		`},"coll_perf":{"coll":"AllReduce","coll_sn":` + u64(uint64(sn)) + `,"coll_msg_size_bytes":65536,"coll_exec_time_us":10,"coll_timing_source":"kernel_gpu","coll_algobw_gbs":6.5,"coll_busbw_gbs":0.0}}` + "\n"
}

func lines(pid, from, to int) string {
	var b strings.Builder
	for sn := from; sn <= to; sn++ {
		b.WriteString(line(pid, sn))
	}
	return b.String()
}

// total is how many operations the newest batch counts, over every process.
func total(md pmetric.Metrics) int {
	n := 0
	for _, p := range points(md, schema.MetricLLMCollectiveCount) {
		n += int(p.value)
	}
	return n
}

func appendTo(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func TestRotationTruncationAndReplacement(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "h-pid1.log")
	appendTo(t, a, lines(1, 1, 3))
	g := newRig(t, baseConfig(filepath.Join(dir, "h-pid*")))
	assert.Equal(t, 3, total(g.last()))

	appendTo(t, a, lines(1, 4, 5))
	g.tick()
	assert.Equal(t, 5, total(g.last()), "appended records are read, the old ones not again")

	// Rotation by rename: the renamed file is the same file (its offset follows it), and a new file takes
	// the name and is read from its start.
	require.NoError(t, os.Rename(a, filepath.Join(dir, "h-pid1.log.1")))
	appendTo(t, filepath.Join(dir, "h-pid1.log.1"), lines(1, 6, 6))
	appendTo(t, a, lines(1, 7, 8))
	g.tick()
	assert.Equal(t, 8, total(g.last()))

	// Truncation (copytruncate): read again from the start.
	require.NoError(t, os.Truncate(a, 0))
	g.tick()
	appendTo(t, a, lines(1, 9, 9))
	g.tick()
	assert.Equal(t, 9, total(g.last()))

	// Replaced in place by longer content with a different head: read from the start, not from the offset.
	require.NoError(t, os.WriteFile(a, []byte(strings.Repeat(" ", 10)+"\n"+lines(1, 10, 14)), 0o644))
	g.tick()
	assert.Equal(t, 14, total(g.last()))
	assert.NotEmpty(t, g.logs.FilterMessageSnippet("replaced").All())
}

func TestStartAtEndSkipsExistingRecordsOnly(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "h-pid1.log")
	appendTo(t, a, lines(1, 1, 3))
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.StartAt = "end"
	g := newRig(t, cfg)
	appendTo(t, a, lines(1, 4, 4))
	appendTo(t, filepath.Join(dir, "h-pid2.log"), lines(2, 1, 2)) // appears later: read whole
	g.tick()
	assert.Equal(t, 3, total(g.last()))
}

func TestReadBudgetSpreadsABacklog(t *testing.T) {
	dir := t.TempDir()
	appendTo(t, filepath.Join(dir, "h-pid1.log"), lines(1, 1, 20))
	appendTo(t, filepath.Join(dir, "h-pid2.log"), lines(2, 1, 20))
	cfg := baseConfig(filepath.Join(dir, "*.log"))
	cfg.MaxRecordsPerInterval = 15
	g := newRig(t, cfg)
	seen := []int{total(g.last())}
	for range 3 {
		g.tick()
		seen = append(seen, total(g.last()))
	}
	assert.Equal(t, []int{15, 30, 40, 40}, seen)
	assert.Len(t, g.logs.FilterMessageSnippet("reading behind").All(), 1, "said once per episode")
	assert.Len(t, g.logs.FilterMessageSnippet("up to date again").All(), 1)
}

func TestLongAndBrokenLinesAreSkippedNotFatal(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "h-pid1.log")
	appendTo(t, a, line(1, 1)+strings.Repeat("x", maxLineBytes+10)+"\n"+line(1, 2)+"garbage\n{}\n"+line(1, 3))
	// A line longer than one read: dropped piece by piece up to its newline.
	b := filepath.Join(dir, "h-pid2.log")
	appendTo(t, b, line(2, 1)+strings.Repeat("y", readChunk+readChunk/3)+"\n"+line(2, 2))
	g := newRig(t, baseConfig(filepath.Join(dir, "*.log")))
	assert.Equal(t, 5, total(g.last()))
	assert.Len(t, g.logs.FilterMessageSnippet("longer than 256 KiB").All(), 2, "once per file")
	assert.Len(t, g.logs.FilterMessageSnippet("not a record").All(), 1, "two bad lines, one report")
}

// host gives the receiver its storage extension.
type host struct {
	component.Host
	ext map[component.ID]component.Component
}

func (h host) GetExtensions() map[component.ID]component.Component { return h.ext }

func startStorage(t *testing.T, dir string) (host, component.ID) {
	t.Helper()
	f := filestorage.NewFactory()
	cfg := f.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = dir
	id := component.MustNewID("file_storage")
	set := extension.Settings{ID: id, TelemetrySettings: componenttest.NewNopTelemetrySettings(), BuildInfo: component.NewDefaultBuildInfo()}
	ext, err := f.Create(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	return host{Host: componenttest.NewNopHost(), ext: map[component.ID]component.Component{id: ext}}, id
}

// run starts a receiver on the storage, lets it read once and stops it; it returns what it counted.
func run(t *testing.T, cfg *Config, h host, next consumer.Metrics) {
	t.Helper()
	set := receivertest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(metadata.Type) // the checkpoint belongs to the receiver's id, stable across restarts
	r, err := newReceiver(cfg, set, next, nil)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), h))
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.files.agg.interval >= 1
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, r.Shutdown(context.Background()))
}

func TestCheckpointNeitherLosesNorDoubleCounts(t *testing.T) {
	files, state := t.TempDir(), t.TempDir()
	a := filepath.Join(files, "h-pid1.log")
	appendTo(t, a, lines(1, 1, 3))
	h, id := startStorage(t, state)
	cfg := baseConfig(filepath.Join(files, "*.log"))
	cfg.CollectionInterval = time.Hour
	cfg.Storage = &id

	first := new(consumertest.MetricsSink)
	run(t, cfg, h, first)
	assert.Equal(t, 3, total(first.AllMetrics()[len(first.AllMetrics())-1]))

	// Records written while the collector was down are read after the restart, and only they.
	appendTo(t, a, lines(1, 4, 5))
	second := new(consumertest.MetricsSink)
	run(t, cfg, h, second)
	assert.Equal(t, 2, total(second.AllMetrics()[len(second.AllMetrics())-1]))

	// A run whose metrics never reached the pipeline does not move the checkpoint: they are read again.
	appendTo(t, a, lines(1, 6, 8))
	run(t, cfg, h, consumertest.NewErr(errors.New("exporter down")))
	third := new(consumertest.MetricsSink)
	run(t, cfg, h, third)
	assert.Equal(t, 3, total(third.AllMetrics()[len(third.AllMetrics())-1]))

	// Without the storage setting the offsets are not kept: a restart reads everything again.
	cfg.Storage = nil
	fourth := new(consumertest.MetricsSink)
	run(t, cfg, h, fourth)
	assert.Equal(t, 8, total(fourth.AllMetrics()[len(fourth.AllMetrics())-1]))
}

func TestStorageMustBeAStorageExtension(t *testing.T) {
	id := component.MustNewID("file_storage")
	cfg := baseConfig("x/*.log")
	cfg.Storage = &id
	r, err := newReceiver(cfg, receivertest.NewNopSettings(metadata.Type), consumertest.NewNop(), nil)
	require.NoError(t, err)
	err = r.Start(context.Background(), componenttest.NewNopHost())
	require.ErrorContains(t, err, "not configured")
}
