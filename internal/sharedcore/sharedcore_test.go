package sharedcore

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
)

// recorder is a core that counts what was asked of it, and fails to start while failStart is set.
type recorder struct {
	name                string
	starts, shutdowns   int
	failStart, failStop bool
}

func (r *recorder) Start(context.Context, component.Host) error {
	if r.failStart {
		return errors.New("cannot start")
	}
	r.starts++
	return nil
}

func (r *recorder) Shutdown(context.Context) error {
	r.shutdowns++
	if r.failStop {
		return errors.New("cannot stop cleanly")
	}
	return nil
}

type config struct{ name string }

var (
	ctx  = context.Background()
	host = componenttest.NewNopHost()
)

func creator(name string, made *int) func() (*recorder, error) {
	return func() (*recorder, error) {
		*made++
		return &recorder{name: name}, nil
	}
}

// The instances created with one configuration share one core, started by the first to start and shut
// down by the last started one to stop; another configuration has its own.
func TestInstancesOfOneConfigurationShareOneCore(t *testing.T) {
	m := NewMap[*recorder]()
	made := 0
	cfg, other := &config{"a"}, &config{"a"} // equal, but not the same configuration
	a, err := m.LoadOrCreate(cfg, creator("a", &made))
	require.NoError(t, err)
	b, err := m.LoadOrCreate(cfg, creator("unused", &made))
	require.NoError(t, err)
	c, err := m.LoadOrCreate(other, creator("other", &made))
	require.NoError(t, err)
	assert.Same(t, a.Core(), b.Core())
	assert.NotSame(t, a.Core(), c.Core())
	assert.Equal(t, 2, made)
	assert.Equal(t, 2, m.Len())

	require.NoError(t, a.Start(ctx, host))
	require.NoError(t, a.Start(ctx, host), "a second Start of one instance counts once")
	require.NoError(t, b.Start(ctx, host))
	assert.Equal(t, 1, a.Core().starts)
	assert.Equal(t, 2, a.Running())
	require.NoError(t, a.Shutdown(ctx))
	assert.Zero(t, a.Core().shutdowns, "b still runs")
	require.NoError(t, b.Shutdown(ctx))
	assert.Equal(t, 1, a.Core().shutdowns)
	assert.Zero(t, c.Core().starts, "the other configuration's core was never started")
	assert.Equal(t, 1, m.Len(), "only the other configuration's core is left")
}

// Shutdown without Start (the collector shuts every component down when another fails to start) counts
// nothing out, never below zero, and leaves no core behind for a later create.
func TestShutdownBeforeStart(t *testing.T) {
	m := NewMap[*recorder]()
	made := 0
	cfg := &config{"a"}
	a, err := m.LoadOrCreate(cfg, creator("first", &made))
	require.NoError(t, err)
	require.NoError(t, a.Shutdown(ctx))
	require.NoError(t, a.Shutdown(ctx), "twice")
	assert.Zero(t, a.Running())
	assert.Zero(t, a.Core().shutdowns, "a core never started is not shut down")
	assert.Zero(t, m.Len())

	again, err := m.LoadOrCreate(cfg, creator("second", &made))
	require.NoError(t, err)
	assert.Equal(t, "second", again.Core().name, "a fresh core, not the one of the failed start")
	require.NoError(t, again.Start(ctx, host))
	assert.Equal(t, 1, again.Running(), "the earlier shutdowns left no negative count")
	require.NoError(t, again.Shutdown(ctx))
}

// One instance started and stopped twice starts and stops its core twice, and stays shared in between.
func TestTwoStartStopCycles(t *testing.T) {
	m := NewMap[*recorder]()
	made := 0
	cfg := &config{"a"}
	in, err := m.LoadOrCreate(cfg, creator("a", &made))
	require.NoError(t, err)
	for cycle := 1; cycle <= 2; cycle++ {
		require.NoError(t, in.Start(ctx, host))
		assert.True(t, in.Started())
		sibling, err := m.LoadOrCreate(cfg, creator("unused", &made))
		require.NoError(t, err)
		assert.Same(t, in.Core(), sibling.Core(), "cycle %d: a create while it runs shares the core", cycle)
		require.NoError(t, in.Shutdown(ctx))
		assert.False(t, in.Started())
		assert.Equal(t, cycle, in.Core().starts)
		assert.Equal(t, cycle, in.Core().shutdowns)
		assert.Zero(t, in.Running())
		assert.Zero(t, m.Len())
	}
	assert.Equal(t, 1, made)
}

// A core that fails to start counts no instance in; once its instances are shut down, a create with the
// same configuration builds a new core that starts.
func TestRecreateAfterAFailedStart(t *testing.T) {
	m := NewMap[*recorder]()
	made := 0
	cfg := &config{"a"}
	in, err := m.LoadOrCreate(cfg, func() (*recorder, error) { made++; return &recorder{name: "broken", failStart: true}, nil })
	require.NoError(t, err)
	require.Error(t, in.Start(ctx, host))
	assert.False(t, in.Started())
	assert.Zero(t, in.Running())
	require.NoError(t, in.Shutdown(ctx))
	assert.Zero(t, in.Core().shutdowns, "never started, never shut down")

	again, err := m.LoadOrCreate(cfg, creator("fresh", &made))
	require.NoError(t, err)
	assert.Equal(t, "fresh", again.Core().name)
	require.NoError(t, again.Start(ctx, host))
	require.NoError(t, again.Shutdown(ctx))
	assert.Equal(t, 1, again.Core().starts)
	assert.Equal(t, 2, made)
}

// A create that fails leaves nothing in the map; the core's shutdown error reaches the last instance.
func TestFailuresAreHandedBack(t *testing.T) {
	m := NewMap[*recorder]()
	cfg := &config{"a"}
	_, err := m.LoadOrCreate(cfg, func() (*recorder, error) { return nil, errors.New("bad config") })
	require.EqualError(t, err, "bad config")
	assert.Zero(t, m.Len())

	in, err := m.LoadOrCreate(cfg, func() (*recorder, error) { return &recorder{failStop: true}, nil })
	require.NoError(t, err)
	require.NoError(t, in.Start(ctx, host))
	require.EqualError(t, in.Shutdown(ctx), "cannot stop cleanly")
	assert.Zero(t, m.Len())
}
