// Package panicguard turns a panic in a component's handling of one batch into an error, so that a bug
// triggered by one input costs that batch and never wedges the component (a panic that unwinds through a
// held lock, or kills the goroutine that serves every later batch).
package panicguard

import (
	"context"
	"fmt"
	"runtime/debug"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/logonce"
)

// Error is a recovered panic: its value and the stack where it happened.
type Error struct {
	Value any
	Stack []byte
}

func (e *Error) Error() string { return fmt.Sprintf("recovered from a panic: %v", e.Value) }

// Run calls fn; when fn panics, Run returns the panic as an *Error instead of unwinding further.
func Run(fn func()) error {
	if pe := recovered(fn); pe != nil {
		return pe
	}
	return nil // not pe: a nil *Error in an error interface is not a nil error
}

// recovered calls fn and returns its panic, or nil when it returned.
func recovered(fn func()) (pe *Error) {
	defer func() {
		if v := recover(); v != nil {
			pe = &Error{Value: v, Stack: debug.Stack()}
		}
	}()
	fn()
	return nil
}

// Guard runs a component's steps under Run and reports what it recovers: every panic is counted in the
// component's recovered-panics metric (by stage), and the first of each stage is logged with its stack, so
// a bug that every batch reaches costs those batches and one log line, not a line per batch.
type Guard struct {
	component string
	logger    *zap.Logger
	counter   metric.Int64Counter
	logged    logonce.Set // stages: a handful per component
}

// NewGuard makes the guard of a component; counter is the component's recovered-panics instrument (from its
// generated telemetry builder), incremented with the stage as attribute.
func NewGuard(component string, logger *zap.Logger, counter metric.Int64Counter) *Guard {
	return &Guard{component: component, logger: logger, counter: counter}
}

// Run calls fn; it reports true when fn returned, false when it panicked (and the panic was reported).
func (g *Guard) Run(stage string, fn func()) bool {
	pe := recovered(fn)
	if pe == nil {
		return true
	}
	g.counter.Add(context.Background(), 1, metric.WithAttributes(attribute.String("stage", stage)))
	if g.logged.First(stage) {
		g.logger.Error(g.component+": internal error; the batch is abandoned or passed on as it came (said once per stage, counted in its recovered_panics metric)",
			zap.String("stage", stage), zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
	}
	return false
}
