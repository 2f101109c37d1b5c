package ncclreceiver

import (
	"bytes"
	"errors"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/logonce"
)

const (
	// maxLineBytes is the longest record accepted; a verbose record with 64 kernel channels is about 15 KB.
	maxLineBytes = 256 << 10
	// readChunk is how much of a file is read at once.
	readChunk = 1 << 20
	// maxPromBytes bounds a textfile; the Inspector's are a few KB per GPU.
	maxPromBytes = 4 << 20
	// fingerprintBytes of a file's head are remembered to notice a file replaced under the same inode
	// (inodes are reused) or truncated and rewritten past the old offset.
	fingerprintBytes = 1024
	// stallPolls is how many polls a file may end in an unfinished line without growing before that is
	// reported (the writer is normally just mid-record).
	stallPolls = 3
)

type fileID struct{ dev, ino uint64 }

func pathID(path string) fileID {
	h := fnv.New64a()
	_, _ = h.Write([]byte(path))
	return fileID{ino: h.Sum64()}
}

// tracked is what the receiver knows about one Inspector file.
type tracked struct {
	path     string
	id       fileID
	prom     bool
	offset   int64  // JSON: where the next unread record starts
	fpLen    int    // JSON: bytes of the head covered by fpHash
	fpHash   uint64 // JSON
	promSig  string // textfile: size, mtime and identity when last read
	skipping bool   // JSON: inside an over-long line, dropping bytes up to its newline
	lastSize int64
	stalled  int
	reported logonce.Set // problems already logged for this file
}

// budget is what one interval may still read.
type budget struct {
	bytes   int64
	records int
}

// fileSink receives what the tailer reads.
type fileSink interface {
	file(f *tracked)
	record(f *tracked, o op)
	prom(f *tracked, pts []promPoint)
	rejected(f *tracked, n int, reason string)
}

// tailer follows the files the include patterns match: JSON files from where it left off, textfiles whole
// whenever they change. It survives rotation (a renamed file keeps its identity and offset; a new file under
// the old name starts from zero), truncation (the offset goes back to zero), and files replaced in place.
type tailer struct {
	cfg     *Config
	logger  *zap.Logger
	files   map[fileID]*tracked
	restore map[fileID]checkpointEntry // offsets from the last run, not yet matched to a file
	first   bool                       // the first poll: start_at applies to files found now
	cursor  string                     // round-robin position (path of the last file read)
	buf     []byte
	noted   logonce.Set // receiver-wide problems already logged
}

func newTailer(cfg *Config, logger *zap.Logger) *tailer {
	return &tailer{
		cfg: cfg, logger: logger, files: map[fileID]*tracked{}, restore: map[fileID]checkpointEntry{},
		first: true,
	}
}

// report logs a problem with one file once per file, however many times it recurs.
func (t *tailer) report(f *tracked, key, msg string, fields ...zap.Field) {
	if !f.reported.First(key) {
		return
	}
	t.logger.Warn(msg, append([]zap.Field{zap.String("file", f.path)}, fields...)...)
}

func (t *tailer) note(key, msg string, fields ...zap.Field) {
	if t.noted.First(key) {
		t.logger.Warn(msg, fields...)
	}
}

// discover matches the patterns and reconciles the result with the files already followed.
func (t *tailer) discover() []*tracked {
	type found struct {
		path string
		fi   os.FileInfo
	}
	var all []found
	seenPath := map[string]bool{}
	for _, pattern := range t.cfg.Include {
		matches, _ := filepath.Glob(pattern) // the pattern was validated
		for _, p := range matches {
			if seenPath[p] || t.excluded(p) {
				continue
			}
			seenPath[p] = true
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			all = append(all, found{p, fi})
		}
	}
	if len(all) > t.cfg.MaxFiles {
		// The newest files are the live ones.
		sort.Slice(all, func(i, j int) bool { return all[i].fi.ModTime().After(all[j].fi.ModTime()) })
		t.note("max_files", "More Inspector files match than max_files; following the most recently written",
			zap.Int("matched", len(all)), zap.Int("max_files", t.cfg.MaxFiles))
		all = all[:t.cfg.MaxFiles]
	}
	live := map[fileID]bool{}
	out := make([]*tracked, 0, len(all))
	for _, a := range all {
		id := identify(a.fi, a.path)
		if live[id] {
			continue // a hard link or a second pattern naming the same file
		}
		live[id] = true
		f := t.files[id]
		if f == nil {
			f = &tracked{id: id, prom: strings.HasSuffix(a.path, ".prom")}
			if c, ok := t.restore[id]; ok && !f.prom {
				f.offset, f.fpLen, f.fpHash = c.Offset, c.FPLen, c.FPHash
				delete(t.restore, id)
			} else if t.first && t.cfg.StartAt == "end" && !f.prom {
				f.offset = a.fi.Size()
				f.fpLen = -1 // take the fingerprint at the next read
			}
			t.files[id] = f
		}
		f.path = a.path // follows a rename
		out = append(out, f)
	}
	for id := range t.files {
		if !live[id] {
			delete(t.files, id)
		}
	}
	t.first = false
	// Serve files round robin from where the last interval's budget ran out, so one busy file cannot starve
	// the others.
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	start := sort.Search(len(out), func(i int) bool { return out[i].path > t.cursor })
	return append(out[start:], out[:start]...)
}

func (t *tailer) excluded(path string) bool {
	for _, p := range t.cfg.Exclude {
		if ok, _ := filepath.Match(p, path); ok {
			return true
		}
	}
	return false
}

// poll reads what the budget allows and reports whether every file was read to its end.
func (t *tailer) poll(b *budget, sink fileSink) (caughtUp bool) {
	caughtUp = true
	for _, f := range t.discover() {
		sink.file(f)
		if b.bytes <= 0 || b.records <= 0 {
			return false
		}
		var done bool
		if f.prom {
			done = t.readProm(f, b, sink)
		} else {
			done = t.readJSON(f, b, sink)
		}
		t.cursor = f.path
		caughtUp = caughtUp && done
	}
	return caughtUp
}

func (t *tailer) readProm(f *tracked, b *budget, sink fileSink) bool {
	fi, err := os.Stat(f.path)
	if err != nil {
		return true
	}
	sig := strconv.FormatInt(fi.Size(), 10) + "/" + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
	if sig == f.promSig {
		return true // unchanged since read: its values are not news
	}
	if fi.Size() > maxPromBytes {
		t.report(f, "too_large", "Inspector textfile is larger than 4 MiB; skipping it", zap.Int64("bytes", fi.Size()))
		return true
	}
	if fi.Size() > b.bytes {
		return false
	}
	body, err := os.ReadFile(f.path)
	if err != nil {
		t.report(f, "read", "Cannot read Inspector textfile", zap.Error(err))
		return true
	}
	b.bytes -= int64(len(body))
	f.promSig = sig
	pts, bad, first := parsePromFile(body)
	if bad > 0 {
		t.report(f, "malformed", "Inspector textfile has lines that are not NCCL Inspector samples; skipping them (reported once per file)",
			zap.Int("lines", bad), zap.String("first", first))
		sink.rejected(f, bad, "malformed")
	}
	if len(pts) > 0 {
		sink.prom(f, pts)
	}
	return true
}

func (t *tailer) readJSON(f *tracked, b *budget, sink fileSink) bool {
	fh, err := os.Open(f.path)
	if err != nil {
		t.report(f, "open", "Cannot open Inspector file", zap.Error(err))
		return true
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return true
	}
	size := fi.Size()
	if size < f.offset {
		t.logger.Info("Inspector file shrank (truncated or rewritten); reading it from the start",
			zap.String("file", f.path), zap.Int64("offset", f.offset), zap.Int64("size", size))
		f.offset, f.fpLen, f.skipping = 0, 0, false
	}
	if !t.checkFingerprint(fh, f, size) {
		t.logger.Info("Inspector file was replaced under the same name and inode; reading it from the start",
			zap.String("file", f.path))
		f.offset, f.fpLen, f.skipping = 0, 0, false
	}
	if cap(t.buf) < readChunk {
		t.buf = make([]byte, readChunk)
	}
	for f.offset < size && b.bytes > 0 && b.records > 0 {
		want := min(int64(readChunk), b.bytes, size-f.offset)
		n, err := fh.ReadAt(t.buf[:want], f.offset)
		if n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				t.report(f, "read", "Cannot read Inspector file", zap.Error(err))
			}
			break
		}
		lines, ends := splitLines(t.buf[:n])
		if len(lines) == 0 {
			if n >= maxLineBytes {
				t.report(f, "long_line", "Inspector file has a line longer than 256 KiB; skipping it (reported once per file)",
					zap.Int64("offset", f.offset))
				sink.rejected(f, 1, "too_long")
				f.offset += int64(n)
				b.bytes -= int64(n)
				f.skipping = true
				continue
			}
			break // the writer is mid-record, or the budget ends inside this line: next interval
		}
		consumed := 0
		for i, line := range lines {
			if b.records <= 0 {
				break
			}
			at := f.offset + int64(consumed)
			consumed = ends[i]
			if f.skipping {
				f.skipping = false // the tail of the over-long line
				continue
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if len(line) > maxLineBytes {
				t.report(f, "long_line", "Inspector file has a line longer than 256 KiB; skipping it (reported once per file)",
					zap.Int64("offset", at))
				sink.rejected(f, 1, "too_long")
				continue
			}
			b.records--
			o, err := parseRecord(line)
			if err != nil {
				t.report(f, "malformed", "Inspector file has a line that is not a record; skipping such lines (reported once per file)",
					zap.Int64("offset", at), zap.String("reason", err.Error()))
				sink.rejected(f, 1, "malformed")
				continue
			}
			sink.record(f, o)
		}
		f.offset += int64(consumed)
		b.bytes -= int64(consumed)
		t.extendFingerprint(fh, f, size)
		if consumed < ends[len(ends)-1] {
			return false // the record budget ran out mid-chunk
		}
	}
	if f.offset < size && b.bytes > 0 && b.records > 0 {
		// Only an unfinished last line is left. The writer normally finishes it within an interval; one
		// that stays unfinished means the writer died mid-record.
		if size == f.lastSize {
			f.stalled++
			if f.stalled == stallPolls {
				t.report(f, "partial", "Inspector file ends in an unfinished record that is not growing (writer stopped mid-line?); it is skipped unless completed",
					zap.Int64("offset", f.offset), zap.Int64("bytes", size-f.offset))
			}
		} else {
			f.stalled = 0
		}
	}
	f.lastSize = size
	return f.offset >= size || (size-f.offset < maxLineBytes && b.bytes > 0 && b.records > 0)
}

// checkFingerprint verifies that the head of the file is still what it was when the offset was taken.
func (t *tailer) checkFingerprint(fh *os.File, f *tracked, size int64) bool {
	if f.fpLen <= 0 || f.offset == 0 {
		return true
	}
	if size < int64(f.fpLen) {
		return false
	}
	h, ok := headHash(fh, f.fpLen)
	return ok && h == f.fpHash
}

// extendFingerprint grows the remembered head up to fingerprintBytes as the file grows.
func (t *tailer) extendFingerprint(fh *os.File, f *tracked, size int64) {
	if f.fpLen >= fingerprintBytes || int64(f.fpLen) >= size {
		return
	}
	n := int(min(size, fingerprintBytes))
	if h, ok := headHash(fh, n); ok {
		f.fpLen, f.fpHash = n, h
	}
}

func headHash(fh *os.File, n int) (uint64, bool) {
	buf := make([]byte, n)
	if _, err := fh.ReadAt(buf, 0); err != nil {
		return 0, false
	}
	h := fnv.New64a()
	_, _ = h.Write(buf)
	return h.Sum64(), true
}
