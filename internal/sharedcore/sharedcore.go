// Package sharedcore keeps the state a component's instances share. The collector creates a connector once
// for every pair of pipelines it joins, each time with the same configuration; the instances must feed one
// core. Cores are keyed by that configuration (the pointer the collector hands every create call, as core's
// sharedcomponent keys them), started when the first instance starts and stopped when the last started one
// stops. An instance shut down without having started (what the collector does to every component when
// another fails to start) changes no count, and a core that no started instance holds leaves the map: a
// later create, even with the same configuration, builds a fresh one.
package sharedcore

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
)

// Core is what is shared: started with its first instance, shut down with its last.
type Core interface {
	Start(ctx context.Context, host component.Host) error
	Shutdown(ctx context.Context) error
}

// Map holds the cores of one component type, one per configuration.
type Map[C Core] struct {
	mu    sync.Mutex
	cores map[component.Config]*entry[C]
}

type entry[C Core] struct {
	core C
	// lifecycle orders the starts and shutdowns of the core's instances (the collector makes them one at a
	// time; this keeps the count and the core's own Start and Shutdown in step if anything does not).
	lifecycle sync.Mutex
	running   int // instances started and not shut down since
}

// NewMap returns an empty map.
func NewMap[C Core]() *Map[C] { return &Map[C]{cores: map[component.Config]*entry[C]{}} }

// Instance is one component instance's hold on its shared core.
type Instance[C Core] struct {
	m       *Map[C]
	key     component.Config
	e       *entry[C]
	started bool // guarded by e.lifecycle
}

// LoadOrCreate returns a new instance on cfg's core, building the core with create when cfg has none. A
// create that fails leaves nothing behind.
func (m *Map[C]) LoadOrCreate(cfg component.Config, create func() (C, error)) (*Instance[C], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.cores[cfg]
	if !ok {
		c, err := create()
		if err != nil {
			return nil, err
		}
		e = &entry[C]{core: c}
		m.cores[cfg] = e
	}
	return &Instance[C]{m: m, key: cfg, e: e}, nil
}

// Len is the number of cores held.
func (m *Map[C]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cores)
}

// Core is the shared core.
func (i *Instance[C]) Core() C { return i.e.core }

// Start counts the instance in; the first to start starts the core, and a core that fails to start counts
// nothing in (the instance stays not started). Starting a started instance again does nothing.
func (i *Instance[C]) Start(ctx context.Context, host component.Host) error {
	i.e.lifecycle.Lock()
	defer i.e.lifecycle.Unlock()
	if i.started {
		return nil
	}
	if i.e.running == 0 {
		if err := i.e.core.Start(ctx, host); err != nil {
			return err
		}
	}
	i.e.running++
	i.started = true
	// An instance started again after its core left the map (a second start/stop cycle) puts it back, so
	// that instances created from now on share it.
	i.m.mu.Lock()
	if _, taken := i.m.cores[i.key]; !taken {
		i.m.cores[i.key] = i.e
	}
	i.m.mu.Unlock()
	return nil
}

// Shutdown counts the instance out; the last started instance to stop shuts the core down. Once no started
// instance holds the core, it leaves the map. An instance that is not started changes no count, however
// often it is shut down.
func (i *Instance[C]) Shutdown(ctx context.Context) error {
	i.e.lifecycle.Lock()
	defer i.e.lifecycle.Unlock()
	var err error
	if i.started {
		i.started = false
		i.e.running--
		if i.e.running == 0 {
			err = i.e.core.Shutdown(ctx)
		}
	}
	if i.e.running == 0 {
		i.m.mu.Lock()
		if i.m.cores[i.key] == i.e {
			delete(i.m.cores, i.key)
		}
		i.m.mu.Unlock()
	}
	return err
}

// Started reports whether the instance is counted in: started, and not shut down since.
func (i *Instance[C]) Started() bool {
	i.e.lifecycle.Lock()
	defer i.e.lifecycle.Unlock()
	return i.started
}

// Running is the number of the core's instances that are started.
func (i *Instance[C]) Running() int {
	i.e.lifecycle.Lock()
	defer i.e.lifecycle.Unlock()
	return i.e.running
}
