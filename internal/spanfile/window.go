package spanfile

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Source is one side of a comparison: a file, and optionally a window of it (`FILE@FROM..TO`).
type Source struct {
	Path     string
	From, To bound // either may be open
}

// bound is a window's end: an absolute time, an offset from the file's first arrival, or nothing.
type bound struct {
	set    bool
	at     time.Time
	offset time.Duration
	isOff  bool
}

func (b bound) resolve(first time.Time) time.Time {
	if b.isOff {
		return first.Add(b.offset)
	}
	return b.at
}

// ParseSource reads `FILE` or `FILE@FROM..TO`, where FROM and TO are RFC 3339 times or offsets from the
// file's first request (`+5m`, `90s`, `1h30m`), and either may be left out (`FILE@..10m`, `FILE@+20m..`).
// A file whose name has an `@` but no `..` after it is a plain file.
func ParseSource(arg string) (Source, error) {
	at := strings.LastIndex(arg, "@")
	if at < 0 || !strings.Contains(arg[at+1:], "..") {
		return Source{Path: arg}, nil
	}
	src := Source{Path: arg[:at]}
	if src.Path == "" {
		return Source{}, fmt.Errorf("%q: no file before @", arg)
	}
	from, to, _ := strings.Cut(arg[at+1:], "..")
	var err error
	if src.From, err = parseBound(from); err != nil {
		return Source{}, fmt.Errorf("%q: window start: %w", arg, err)
	}
	if src.To, err = parseBound(to); err != nil {
		return Source{}, fmt.Errorf("%q: window end: %w", arg, err)
	}
	return src, nil
}

func parseBound(s string) (bound, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return bound{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return bound{set: true, at: t}, nil
	}
	d, err := time.ParseDuration(strings.TrimPrefix(s, "+"))
	if err != nil {
		return bound{}, errors.New("want an RFC 3339 time (2026-12-01T10:00:00Z) or an offset from the first request (+5m, 90s)")
	}
	if d < 0 {
		return bound{}, errors.New("an offset counts from the first request and cannot be negative")
	}
	return bound{set: true, offset: d, isOff: true}, nil
}

// Window is a source's requests with the window applied, and what the window was.
type Window struct {
	Source   Source
	File     *File
	From, To time.Time // zero when open
	Requests []Request
}

// Load reads the source's file and keeps the requests that arrived inside its window (from inclusive,
// to exclusive). An empty window is an error that says what the file does hold.
func Load(src Source) (*Window, error) {
	f, err := Read(src.Path)
	if err != nil {
		return nil, err
	}
	w := &Window{Source: src, File: f}
	if len(f.Requests) == 0 {
		return nil, fmt.Errorf("%s: %d spans, none explained by llm_root_cause (was the file exporter in a pipeline after it?)", src.Path, f.Foreign)
	}
	first, last := f.Requests[0].Start, f.Requests[len(f.Requests)-1].Start
	if src.From.set {
		w.From = src.From.resolve(first)
	}
	if src.To.set {
		w.To = src.To.resolve(first)
	}
	for _, r := range f.Requests {
		if (w.From.IsZero() || !r.Start.Before(w.From)) && (w.To.IsZero() || r.Start.Before(w.To)) {
			w.Requests = append(w.Requests, r)
		}
	}
	if len(w.Requests) == 0 {
		return nil, fmt.Errorf("%s: no request arrived in the window %s..%s; the file's requests arrived from %s to %s",
			src.Path, stamp(w.From), stamp(w.To), first.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339))
	}
	return w, nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
