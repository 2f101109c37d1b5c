// Package spanfile reads the request spans a servescope collector explained, from the files the stock
// `file` exporter writes: OTLP JSON lines (its default), length-prefixed OTLP protobuf (`format: proto`),
// either one with the exporter's zstd compression (per message, or the whole file with its native
// compression), and rotated files that logrotate compressed with gzip. The format is found from the bytes,
// not the file name.
//
// It reads what llm_root_cause wrote on each request span (the breakdown, the verdict, tokens, tenant and
// prompt family) and nothing else: never prompt text, which no servescope span carries.
package spanfile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/schema"
)

// Request is one explained request. Durations are seconds and token counts are counts; NaN where the
// span did not say.
type Request struct {
	ID      string
	TraceID string
	Model   string
	Tenant  string
	Family  string
	Replica string
	Engine  string
	Start   time.Time // arrival
	End     time.Time

	Slow       bool
	SlowReason string
	Cause      string
	Secondary  string
	Evidence   string

	Queue, Prefill, Decode, Other float64
	TTFT, TPOT, E2E               float64

	PromptTokens, GenerationTokens, CachedTokens float64
}

// File is what one file held.
type File struct {
	Path     string
	Requests []Request // in arrival order
	// Foreign counts spans that carry no explanation (other services' spans, or spans written before
	// llm_root_cause ran).
	Foreign int
	// cachedByTrace is the cached prompt tokens a span without an explanation (a gateway's, which reads
	// the engine's usage) gave for its trace: where the engine's own span did not say (vLLM's does not).
	cachedByTrace map[string]float64
	// Problems says what could not be read, one line per kind of problem with the place it first happened;
	// the rest of the file was still read.
	Problems []string
}

// The limits keep a hostile or mistaken file (a binary, a multi-gigabyte single line) from taking all
// memory: one OTLP message is at most this large. The file exporter writes one batch per message, which
// the batch processor keeps far below it.
const maxMessageBytes = 256 << 20

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Read reads one file. It fails only when the file cannot be opened or holds no OTLP message at all;
// a damaged message (a truncated last line while the collector was writing) is skipped and said in
// Problems.
func Read(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := &File{Path: path}
	messages, err := read(f, out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if messages == 0 {
		if len(out.Problems) > 0 {
			return nil, fmt.Errorf("%s: no readable OTLP traces: %s", path, out.Problems[0])
		}
		return nil, fmt.Errorf("%s: empty: no spans", path)
	}
	for i := range out.Requests {
		r := &out.Requests[i]
		if cached, ok := out.cachedByTrace[r.TraceID]; ok && math.IsNaN(r.CachedTokens) {
			r.CachedTokens = cached
		}
	}
	out.cachedByTrace = nil
	sort.SliceStable(out.Requests, func(i, j int) bool { return out.Requests[i].Start.Before(out.Requests[j].Start) })
	return out, nil
}

// read undoes the outer compression, then reads messages in whichever framing the bytes show, and returns
// how many messages it decoded.
func read(r io.Reader, out *File) (int, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(maxMessageBytes))
		if err != nil {
			return 0, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	p := &problems{file: out}
	defer p.flush()
	first, err := firstNonSpace(br)
	if err != nil {
		return 0, nil // empty
	}
	if first == '{' {
		return readLines(br, out, p), nil
	}
	return readFrames(br, out, p)
}

func firstNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0, err
		}
		if b[0] != ' ' && b[0] != '\n' && b[0] != '\r' && b[0] != '\t' {
			return b[0], nil
		}
		_, _ = br.ReadByte()
	}
}

// readLines reads OTLP JSON, one message a line.
func readLines(br *bufio.Reader, out *File, p *problems) int {
	messages := 0
	for line := 1; ; line++ {
		raw, tooLong, err := readLine(br)
		if tooLong {
			p.add("too long", fmt.Sprintf("line %d is over %d MiB; skipped", line, maxMessageBytes>>20))
		} else if len(bytes.TrimSpace(raw)) > 0 {
			if decodeErr := decode(raw, out); decodeErr != nil {
				if errors.Is(err, io.EOF) {
					p.add("cut", fmt.Sprintf("line %d (the last, cut short: was the collector still writing?) is not an OTLP JSON traces message (%v); skipped", line, decodeErr))
				} else {
					p.add("json", fmt.Sprintf("line %d is not an OTLP JSON traces message (%v); skipped", line, decodeErr))
				}
			} else {
				messages++
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.add("read", fmt.Sprintf("reading stopped at line %d: %v", line, err))
			}
			return messages
		}
	}
}

// readLine returns one line without its newline, or tooLong (and the line skipped) past the limit.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > maxMessageBytes {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), tooLong, err
	}
}

// readFrames reads messages each preceded by its length (4 bytes, big-endian), as the file exporter
// writes protobuf and its per-message compression.
func readFrames(br *bufio.Reader, out *File, p *problems) (int, error) {
	messages := 0
	var zdec *zstd.Decoder
	for frame := 1; ; frame++ {
		var size uint32
		if err := binary.Read(br, binary.BigEndian, &size); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				p.add("cut", fmt.Sprintf("message %d is cut short (the file ends inside its length)", frame))
			}
			return messages, nil
		}
		if size > maxMessageBytes {
			if messages == 0 {
				return 0, errors.New("neither OTLP JSON lines nor length-prefixed OTLP messages (is it a file exporter's output?)")
			}
			p.add("size", fmt.Sprintf("message %d claims %d bytes; reading stopped there", frame, size))
			return messages, nil
		}
		raw := make([]byte, size)
		if _, err := io.ReadFull(br, raw); err != nil {
			p.add("cut", fmt.Sprintf("message %d is cut short (the collector may still have been writing it)", frame))
			return messages, nil
		}
		if bytes.HasPrefix(raw, zstdMagic) {
			if zdec == nil {
				d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxMessageBytes))
				if err != nil {
					return messages, err
				}
				defer d.Close()
				zdec = d
			}
			plain, err := zdec.DecodeAll(raw, nil)
			if err != nil {
				p.add("zstd", fmt.Sprintf("message %d does not decompress (%v); skipped", frame, err))
				continue
			}
			raw = plain
		}
		if err := decode(raw, out); err != nil {
			if messages == 0 && frame == 1 {
				return 0, fmt.Errorf("not OTLP traces: %w", err)
			}
			p.add("decode", fmt.Sprintf("message %d is not OTLP traces (%v); skipped", frame, err))
			continue
		}
		messages++
	}
}

var (
	jsonTraces  = &ptrace.JSONUnmarshaler{}
	protoTraces = &ptrace.ProtoUnmarshaler{}
)

func decode(raw []byte, out *File) error {
	var (
		td  ptrace.Traces
		err error
	)
	if first := bytes.TrimLeft(raw, " \t\r\n"); len(first) > 0 && first[0] == '{' {
		td, err = jsonTraces.UnmarshalTraces(raw)
	} else {
		td, err = protoTraces.UnmarshalTraces(raw)
	}
	if err != nil {
		return err
	}
	collect(td, out)
	return nil
}

func collect(td ptrace.Traces, out *File) {
	for _, rs := range td.ResourceSpans().All() {
		res := rs.Resource().Attributes()
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				a := span.Attributes()
				cause, explained := a.Get(schema.AttrLLMRootCause)
				if !explained {
					out.Foreign++
					if cached := number(a, schema.AttrGenAIUsageCachedTokens); !math.IsNaN(cached) {
						if out.cachedByTrace == nil {
							out.cachedByTrace = map[string]float64{}
						}
						out.cachedByTrace[span.TraceID().String()] = cached
					}
					continue
				}
				out.Requests = append(out.Requests, request(span, a, res, cause.AsString()))
			}
		}
	}
}

func request(span ptrace.Span, a, res pcommon.Map, cause string) Request {
	r := Request{
		ID:         attrvalue.String(a, schema.AttrGenAIRequestID),
		TraceID:    span.TraceID().String(),
		Model:      firstOf(attrvalue.String(a, schema.AttrGenAIResponseModel), attrvalue.String(a, schema.AttrGenAIRequestModel), attrvalue.String(res, schema.AttrGenAIRequestModel)),
		Tenant:     attrvalue.String(a, schema.AttrLLMTenant),
		Family:     attrvalue.String(a, schema.AttrLLMPromptFamily),
		Replica:    firstOf(attrvalue.String(res, schema.AttrServiceInstanceID), attrvalue.String(a, schema.AttrServiceInstanceID)),
		Engine:     attrvalue.String(res, schema.AttrLLMEngineName),
		Start:      span.StartTimestamp().AsTime(),
		End:        span.EndTimestamp().AsTime(),
		SlowReason: attrvalue.String(a, schema.AttrLLMSlowReason),
		Cause:      cause,
		Secondary:  attrvalue.String(a, schema.AttrLLMRootCauseSecondary),
		Evidence:   attrvalue.String(a, schema.AttrLLMRootCauseEvidence),

		Queue: number(a, schema.AttrLLMLatencyQueue), Prefill: number(a, schema.AttrLLMLatencyPrefill),
		Decode: number(a, schema.AttrLLMLatencyDecode), Other: number(a, schema.AttrLLMLatencyOther),
		TTFT: number(a, schema.AttrLLMLatencyTtft), TPOT: number(a, schema.AttrLLMLatencyTpot),
		E2E: number(a, schema.AttrLLMLatencyE2e),

		PromptTokens:     number(a, schema.AttrLLMTokensPrompt),
		GenerationTokens: number(a, schema.AttrLLMTokensGeneration),
		CachedTokens:     number(a, schema.AttrLLMTokensCached),
	}
	if v, ok := a.Get(schema.AttrLLMSlow); ok && v.Type() == pcommon.ValueTypeBool {
		r.Slow = v.Bool()
	}
	if r.ID == "" {
		r.ID = span.SpanID().String()
	}
	if r.Model == "" {
		r.Model = "unknown"
	}
	if r.Tenant == "" {
		r.Tenant = "unknown"
	}
	return r
}

// number is an attribute's value, NaN when the span does not say (the breakdown leaves unknown phases out).
func number(m pcommon.Map, key string) float64 {
	if v, ok := attrvalue.Float(m, key); ok {
		return v
	}
	return math.NaN()
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// problems keeps the first place of each kind of problem and how often it happened, so that a file with
// 10,000 damaged lines gives one line per kind, not 10,000.
type problems struct {
	file   *File
	order  []string
	first  map[string]string
	counts map[string]int
}

func (p *problems) add(kind, message string) {
	if p.first == nil {
		p.first, p.counts = map[string]string{}, map[string]int{}
	}
	if _, seen := p.first[kind]; !seen {
		p.order = append(p.order, kind)
		p.first[kind] = message
	}
	p.counts[kind]++
}

func (p *problems) flush() {
	for _, kind := range p.order {
		msg := p.first[kind]
		if n := p.counts[kind]; n > 1 {
			msg += fmt.Sprintf(" (and %d more like it)", n-1)
		}
		p.file.Problems = append(p.file.Problems, msg)
	}
}
