package promtext

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// MetricType is the declared kind of a family. It is kept coarse on purpose:
// the OpenMetrics-only kinds are folded into the four the rest of the
// collector knows how to convert.
type MetricType int

const (
	// TypeUnknown covers both "no TYPE line" and an explicit "untyped" or
	// "unknown", because consumers treat them identically.
	TypeUnknown MetricType = iota
	TypeCounter
	TypeGauge
	TypeHistogram
	TypeSummary
)

// String returns the exposition-format spelling so that log lines and test
// failures read like the scraped text.
func (t MetricType) String() string {
	switch t {
	case TypeUnknown:
		return "unknown"
	case TypeCounter:
		return "counter"
	case TypeGauge:
		return "gauge"
	case TypeHistogram:
		return "histogram"
	case TypeSummary:
		return "summary"
	}
	return "MetricType(" + strconv.Itoa(int(t)) + ")"
}

// Label is a name/value pair kept as a slice element rather than a map so
// that the order written by the engine survives and a sample costs no map.
type Label struct{ Name, Value string }

// Sample is one line of the exposition.
type Sample struct {
	// Name is kept as written, suffix included (e.g. "..._bucket"), because
	// the family alone does not say which part of a histogram or summary the
	// value is.
	Name string
	// Labels are in the order written. A line repeating a label name is
	// rejected rather than resolved, since either choice would silently
	// merge two different series.
	Labels []Label
	Value  float64
	// TimestampMs is only meaningful when HasTimestamp is set; engines almost
	// never send timestamps and 0 is a valid one, hence the separate flag.
	TimestampMs  int64
	HasTimestamp bool
}

// Family groups the samples of one metric family so that histogram and
// summary parts can be reassembled without the caller re-implementing the
// suffix rules.
type Family struct {
	// Name comes from the HELP/TYPE line, or from the sample itself when the
	// engine declared nothing, so that undeclared series are not lost.
	Name    string
	Type    MetricType
	Help    string
	Samples []Sample
}

// LineError describes one skipped line. It carries enough of the line to be
// useful in a log message, but never all of it, since a broken endpoint can
// send megabytes on one line.
type LineError struct {
	Line   int    // 1-based line number
	Reason string // short, e.g. `invalid value "abc"`
	Text   string // the line, cut to at most 120 bytes plus "…"
}

// Error lets a LineError be logged or wrapped like any other error.
func (e LineError) Error() string {
	return "line " + strconv.Itoa(e.Line) + ": " + e.Reason + ": " + e.Text
}

// Result is everything that could be read from one body. Errors is capped so
// that a garbage body cannot make the report itself large; ErrorCount still
// tells how bad it was.
type Result struct {
	Families   []*Family   // in order of first appearance, as the engine wrote them
	Errors     []LineError // the first MaxReportedErrors skipped lines
	ErrorCount int         // all skipped lines
	// Samples is how many sample lines were read, or with OverLimit, how many the body holds at least.
	Samples int
	// OverLimit is set when ParseLimit stopped at the first sample beyond its limit. Families and Errors
	// then cover only the body before that sample; Samples adds the unread lines that are neither blank nor
	// comments, which are counted without being parsed.
	OverLimit bool
}

// MaxReportedErrors bounds Result.Errors: the first few errors are what an
// operator needs to diagnose a broken endpoint, the rest only cost memory.
const MaxReportedErrors = 10

const (
	maxLineBytes    = 1 << 20 // longer lines are rejected unread
	maxLabels       = 1000    // per sample
	maxTextBytes    = 120     // LineError.Text
	maxTokenBytes   = 48      // tokens quoted in LineError.Reason
	labelArenaChunk = 512     // labels allocated at once for many samples
	maxInternSize   = 1 << 16 // entries; beyond this strings are not shared
	linearDupLimit  = 16      // label counts checked for duplicates without a map
)

// Parse reads a whole exposition body. It never fails as a whole; see the
// package documentation for what happens to lines it cannot read.
func Parse(body []byte) Result { return ParseLimit(body, 0) }

// ParseLimit is Parse with a bound on the samples kept: once the body has
// given more than maxSamples samples (0 means no bound), parsing stops and the
// Result says OverLimit. A caller that rejects such a body as a whole then
// never pays for building the samples it throws away.
func ParseLimit(body []byte, maxSamples int) Result {
	p := parser{
		fams:   make(map[string]*famState),
		intern: make(map[string]string),
	}
	// A byte order mark would otherwise make the first line, usually a HELP
	// line, unreadable.
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	lineNo := 0
	for len(body) > 0 {
		lineNo++
		line, rest := nextLine(body)
		body = rest
		p.parseLine(lineNo, line)
		if maxSamples > 0 && len(p.samples) > maxSamples {
			p.res.OverLimit = true
			p.res.Samples = len(p.samples) + countSampleLines(body)
			break
		}
	}
	if !p.res.OverLimit {
		p.res.Samples = len(p.samples)
	}
	p.distributeSamples()
	return p.res
}

// nextLine splits off the first line of body, without its newline.
func nextLine(body []byte) (line, rest []byte) {
	if i := bytes.IndexByte(body, '\n'); i >= 0 {
		return body[:i], body[i+1:]
	}
	return body, nil
}

// countSampleLines counts the lines that are neither blank nor comments: the
// samples a body over the limit would have added had it been parsed (lines
// that would fail to parse included), without allocating.
func countSampleLines(body []byte) int {
	n := 0
	for len(body) > 0 {
		var line []byte
		line, body = nextLine(body)
		line = bytes.TrimSuffix(line, []byte("\r"))
		if content := trimSpace(line); len(content) > 0 && content[0] != '#' {
			n++
		}
	}
	return n
}

// famState adds to a Family what the parser needs to know about it; the
// Family is embedded so that one allocation serves both.
type famState struct {
	Family
	declared bool // named by a HELP or TYPE line
	start    int  // index of the family's first sample in parser.samples
	n        int  // number of samples
	next     int  // fill position while distributing
}

type parser struct {
	res     Result
	fams    map[string]*famState
	current *famState // the family of the most recent HELP/TYPE line

	intern   map[string]string
	labels   []Label // scratch for the line being parsed
	arena    []Label // backing store handed out to samples
	unesc    []byte  // scratch for unescaping
	seenLbls map[string]struct{}

	// Samples are collected in one slice, in body order, and only handed to
	// their families at the end; growing one slice per family would cost
	// several allocations per family.
	samples    []Sample
	owners     []*famState
	states     []*famState // in order of first appearance
	interleave bool        // some family's samples are not contiguous
}

// lineErr is a parse failure before it is formatted: most failures in a
// garbage body are only counted, so the message is built only when it is
// going to be reported.
type lineErr struct {
	msg    string
	tok    []byte
	hasTok bool
	tail   string
}

func errMsg(msg string) *lineErr { return &lineErr{msg: msg} }

func errTok(msg string, tok []byte) *lineErr { return &lineErr{msg: msg, tok: tok, hasTok: true} }

func (e *lineErr) reason() string {
	r := e.msg
	if e.hasTok {
		t, cut := cutUTF8(e.tok, maxTokenBytes)
		s := string(t)
		if cut {
			s += "…"
		}
		r += " " + strconv.Quote(s)
	}
	return r + e.tail
}

func (p *parser) fail(lineNo int, line []byte, e *lineErr) {
	p.res.ErrorCount++
	if len(p.res.Errors) >= MaxReportedErrors {
		return
	}
	t, cut := cutUTF8(line, maxTextBytes)
	text := string(t)
	if cut {
		text += "…"
	}
	p.res.Errors = append(p.res.Errors, LineError{Line: lineNo, Reason: e.reason(), Text: text})
}

func (p *parser) parseLine(lineNo int, line []byte) {
	if len(line) > maxLineBytes {
		p.fail(lineNo, line, &lineErr{msg: "line too long (" + strconv.Itoa(len(line)) + " bytes)"})
		return
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	content := trimSpace(line)
	if len(content) == 0 {
		return
	}
	var err *lineErr
	if content[0] == '#' {
		err = p.parseComment(content)
	} else {
		err = p.parseSample(content)
	}
	if err != nil {
		p.fail(lineNo, line, err)
	}
}

// parseComment handles HELP and TYPE lines; anything else starting with '#'
// is a free comment and is ignored.
func (p *parser) parseComment(line []byte) *lineErr {
	rest := skipSpace(line[1:])
	var isHelp bool
	switch {
	case hasKeyword(rest, "HELP"):
		isHelp = true
	case hasKeyword(rest, "TYPE"):
	default:
		return nil
	}
	rest = skipSpace(rest[4:])
	if len(rest) == 0 {
		return errMsg("missing metric name")
	}
	name, n, err := p.metaName(rest)
	if err != nil {
		return err
	}
	rest = skipSpace(rest[n:])

	if isHelp {
		text := p.unescapeHelp(rest)
		fs := p.declare(name)
		if !utf8.Valid(text) {
			return errMsg("invalid UTF-8 in HELP")
		}
		// Duplicate HELP lines (seen in Ray captures) repeat the same text;
		// the first one is kept so that a later, odd one cannot replace it.
		if fs.Help == "" {
			fs.Help = p.str(text)
		}
		return nil
	}

	fs := p.declare(name)
	if len(rest) == 0 {
		return errMsg("missing type")
	}
	t, ok := parseTypeWord(rest)
	if !ok {
		return errTok("unknown type", rest)
	}
	switch fs.Type {
	case t:
	case TypeUnknown:
		fs.Type = t
	default:
		return &lineErr{msg: "conflicting type", tok: rest, hasTok: true, tail: ", family is already " + fs.Type.String()}
	}
	return nil
}

// metaName reads the metric name of a HELP or TYPE line and returns it with
// the number of bytes it took.
func (p *parser) metaName(rest []byte) (string, int, *lineErr) {
	if rest[0] == '"' {
		raw, end, ok := p.quoted(rest, 0)
		if !ok {
			return "", 0, errMsg("unterminated quoted name")
		}
		if len(raw) == 0 {
			return "", 0, errMsg("empty metric name")
		}
		if !utf8.Valid(raw) {
			return "", 0, errMsg("invalid UTF-8 in metric name")
		}
		if end < len(rest) && !isSpace(rest[end]) {
			return "", 0, errTok("invalid metric name", rest[:tokenEnd(rest, 0)])
		}
		return p.str(raw), end, nil
	}
	n := scanName(rest)
	if n == 0 || (n < len(rest) && !isSpace(rest[n])) {
		return "", 0, errTok("invalid metric name", rest[:tokenEnd(rest, 0)])
	}
	return p.str(rest[:n]), n, nil
}

// declare returns the family for a HELP or TYPE line, re-using an existing
// one: real exporters repeat HELP/TYPE blocks, and two families of one name
// would make the result ambiguous.
func (p *parser) declare(name string) *famState {
	fs, ok := p.fams[name]
	if !ok {
		fs = p.newFamily(name)
	}
	fs.declared = true
	p.current = fs
	return fs
}

func (p *parser) newFamily(name string) *famState {
	fs := &famState{Family: Family{Name: name}}
	p.fams[name] = fs
	p.res.Families = append(p.res.Families, &fs.Family)
	p.states = append(p.states, fs)
	return fs
}

func (p *parser) addSample(fs *famState, s Sample) {
	if fs.n == 0 {
		fs.start = len(p.samples)
	} else if p.owners[len(p.owners)-1] != fs {
		p.interleave = true
	}
	fs.n++
	p.samples = append(p.samples, s)
	p.owners = append(p.owners, fs)
}

// distributeSamples gives every family its samples. In the usual layout,
// where each family's samples are written together, the families share the
// collected slice without copying; otherwise the samples are regrouped into
// one new slice.
func (p *parser) distributeSamples() {
	all := p.samples
	if p.interleave {
		all = make([]Sample, len(p.samples))
		off := 0
		for _, fs := range p.states {
			fs.start, fs.next = off, off
			off += fs.n
		}
		for i, fs := range p.owners {
			all[fs.next] = p.samples[i]
			fs.next++
		}
	}
	for _, fs := range p.states {
		if fs.n > 0 {
			fs.Samples = all[fs.start : fs.start+fs.n : fs.start+fs.n]
		}
	}
}

// familySuffixes are the series suffixes that Prometheus and OpenMetrics
// clients append to a family name.
var familySuffixes = [...]string{"_total", "_created", "_bucket", "_count", "_sum", "_info", "_gcount", "_gsum"}

// familyFor picks the family of a sample. Exact names win over suffix
// matches so that prometheus_client's separately declared "_created" gauges
// stay separate; suffix matches are only tried against the family just
// declared, which is how every client lays out its output.
func (p *parser) familyFor(name []byte) (*famState, string) {
	cur := p.current
	if cur != nil && string(name) == cur.Name {
		return cur, cur.Name
	}
	fs, ok := p.fams[string(name)]
	if ok && fs.declared {
		return fs, fs.Name
	}
	if cur != nil && len(name) > len(cur.Name) && string(name[:len(cur.Name)]) == cur.Name {
		suffix := name[len(cur.Name):]
		for _, s := range familySuffixes {
			if string(suffix) == s {
				return cur, p.str(name)
			}
		}
	}
	if ok {
		return fs, fs.Name
	}
	fs = p.newFamily(p.str(name))
	return fs, fs.Name
}

func (p *parser) parseSample(line []byte) *lineErr {
	var (
		name    []byte // unquoted name, points into line
		qname   string // quoted name, already a string
		hasName bool
		pos     int
	)
	if line[0] != '{' {
		n := scanName(line)
		if n == 0 || (n < len(line) && !isSpace(line[n]) && line[n] != '{') {
			return errTok("invalid metric name", line[:tokenEnd(line, 0)])
		}
		name, hasName, pos = line[:n], true, n
		pos = skipSpaceAt(line, pos)
	}

	labels := p.labels[:0]
	defer func() { p.labels = labels[:0] }()
	if pos < len(line) && line[pos] == '{' {
		pos++
	labelLoop:
		for first := true; ; first = false {
			pos = skipSpaceAt(line, pos)
			if pos >= len(line) {
				return errMsg("unterminated label set")
			}
			if line[pos] == '}' {
				pos++
				break labelLoop
			}

			var lname string
			if line[pos] == '"' {
				raw, end, ok := p.quoted(line, pos)
				if !ok {
					return errMsg("unterminated quoted name")
				}
				if !utf8.Valid(raw) {
					return errMsg("invalid UTF-8 in quoted name")
				}
				if len(raw) == 0 {
					return errMsg("empty quoted name")
				}
				lname = p.str(raw)
				pos = skipSpaceAt(line, end)
				if pos < len(line) && (line[pos] == ',' || line[pos] == '}') {
					// A quoted string without "=" is the metric name in the
					// UTF-8 form; it has to come first and stand alone.
					if hasName {
						return errMsg("metric name given twice")
					}
					if !first {
						return errMsg("quoted metric name must come first in the label set")
					}
					qname, hasName = lname, true
					if line[pos] == ',' {
						pos++
					}
					continue
				}
			} else {
				n := scanLabelName(line[pos:])
				if n == 0 {
					return errTok("invalid label name", line[pos:tokenEnd(line, pos)])
				}
				lname = p.str(line[pos : pos+n])
				pos = skipSpaceAt(line, pos+n)
			}

			if pos >= len(line) || line[pos] != '=' {
				return errTok(`expected "=" after label`, []byte(lname))
			}
			pos = skipSpaceAt(line, pos+1)
			if pos >= len(line) || line[pos] != '"' {
				return errTok("expected quoted value for label", []byte(lname))
			}
			raw, end, ok := p.quoted(line, pos)
			if !ok {
				return errMsg("unterminated label value")
			}
			if !utf8.Valid(raw) {
				return errTok("invalid UTF-8 in value of label", []byte(lname))
			}
			if len(labels) >= maxLabels {
				return errMsg("too many labels (max " + strconv.Itoa(maxLabels) + ")")
			}
			if p.isDuplicate(labels, lname) {
				return errTok("duplicate label", []byte(lname))
			}
			labels = append(labels, Label{Name: lname, Value: p.str(raw)})

			pos = skipSpaceAt(line, end)
			if pos >= len(line) {
				return errMsg("unterminated label set")
			}
			switch line[pos] {
			case ',':
				pos++
			case '}':
				pos++
				break labelLoop
			default:
				return errTok(`expected "," or "}" after value of label`, []byte(lname))
			}
		}
		pos = skipSpaceAt(line, pos)
	}
	if !hasName {
		return errMsg("missing metric name")
	}

	if pos >= len(line) {
		return errMsg("missing value")
	}
	end := tokenEnd(line, pos)
	value, ok := parseValue(line[pos:end])
	if !ok {
		return errTok("invalid value", line[pos:end])
	}
	pos = skipSpaceAt(line, end)

	var ts int64
	hasTS := false
	// '#' after the value starts an OpenMetrics exemplar, which carries
	// nothing this collector uses; it is accepted and dropped.
	if pos < len(line) && line[pos] != '#' {
		end = tokenEnd(line, pos)
		v, err := strconv.ParseInt(string(line[pos:end]), 10, 64)
		if err != nil {
			return errTok("invalid timestamp", line[pos:end])
		}
		ts, hasTS = v, true
		pos = skipSpaceAt(line, end)
		if pos < len(line) && line[pos] != '#' {
			return errTok("unexpected text after timestamp", line[pos:tokenEnd(line, pos)])
		}
	}

	var fs *famState
	var sname string
	if qname != "" {
		fs, sname = p.familyFor([]byte(qname))
	} else {
		fs, sname = p.familyFor(name)
	}
	p.addSample(fs, Sample{
		Name:         sname,
		Labels:       p.keepLabels(labels),
		Value:        value,
		TimestampMs:  ts,
		HasTimestamp: hasTS,
	})
	return nil
}

// isDuplicate checks a new label name against the ones already on the line.
// Short label sets are scanned; long ones use a set so that a 1000-label line
// does not cost a million comparisons.
func (p *parser) isDuplicate(labels []Label, name string) bool {
	if len(labels) < linearDupLimit {
		for i := range labels {
			if labels[i].Name == name {
				return true
			}
		}
		return false
	}
	if len(labels) == linearDupLimit {
		if p.seenLbls == nil {
			p.seenLbls = make(map[string]struct{}, 64)
		}
		clear(p.seenLbls)
		for i := range labels {
			p.seenLbls[labels[i].Name] = struct{}{}
		}
	}
	if _, dup := p.seenLbls[name]; dup {
		return true
	}
	p.seenLbls[name] = struct{}{}
	return false
}

// keepLabels copies the line's labels into a shared backing array so that a
// typical sample costs no allocation of its own. The returned slice has its
// capacity capped, so appending to it cannot overwrite a neighbour.
func (p *parser) keepLabels(ls []Label) []Label {
	if len(ls) == 0 {
		return nil
	}
	if len(ls) > cap(p.arena)-len(p.arena) {
		p.arena = make([]Label, 0, max(labelArenaChunk, len(ls)))
	}
	start := len(p.arena)
	p.arena = append(p.arena, ls...)
	return p.arena[start:len(p.arena):len(p.arena)]
}

// str converts bytes to a string, sharing repeated values: engines repeat the
// same label names and values (a model path, an engine index) on every line,
// and one copy of each is enough.
func (p *parser) str(b []byte) string {
	if s, ok := p.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(p.intern) < maxInternSize {
		p.intern[s] = s
	}
	return s
}

// quoted reads a double-quoted string starting at line[pos]. It returns the
// unescaped content, which aliases line or the parser's scratch buffer and so
// must be converted before the next call, and the position after the
// closing quote. Escapes other than \\, \" and \n are kept verbatim, as
// Prometheus does.
func (p *parser) quoted(line []byte, pos int) ([]byte, int, bool) {
	start := pos + 1
	q := bytes.IndexByte(line[start:], '"')
	if q < 0 {
		return nil, len(line), false
	}
	bs := bytes.IndexByte(line[start:start+q], '\\')
	if bs < 0 {
		return line[start : start+q], start + q + 1, true
	}
	buf := append(p.unesc[:0], line[start:start+bs]...)
	i := start + bs
	for i < len(line) {
		c := line[i]
		switch {
		case c == '"':
			p.unesc = buf
			return buf, i + 1, true
		case c == '\\' && i+1 < len(line):
			switch e := line[i+1]; e {
			case '\\', '"':
				buf = append(buf, e)
			case 'n':
				buf = append(buf, '\n')
			default:
				buf = append(buf, c, e)
			}
			i += 2
		default:
			buf = append(buf, c)
			i++
		}
	}
	p.unesc = buf
	return nil, len(line), false
}

// unescapeHelp undoes the two escapes the format defines for HELP text.
func (p *parser) unescapeHelp(b []byte) []byte {
	if bytes.IndexByte(b, '\\') < 0 {
		return b
	}
	buf := p.unesc[:0]
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\\' && i+1 < len(b) {
			switch b[i+1] {
			case '\\':
				buf = append(buf, '\\')
				i++
				continue
			case 'n':
				buf = append(buf, '\n')
				i++
				continue
			}
		}
		buf = append(buf, c)
	}
	p.unesc = buf
	return buf
}

func parseTypeWord(w []byte) (MetricType, bool) {
	switch {
	case equalFold(w, "counter"):
		return TypeCounter, true
	case equalFold(w, "gauge"), equalFold(w, "info"), equalFold(w, "stateset"):
		return TypeGauge, true
	case equalFold(w, "histogram"), equalFold(w, "gaugehistogram"):
		return TypeHistogram, true
	case equalFold(w, "summary"):
		return TypeSummary, true
	case equalFold(w, "untyped"), equalFold(w, "unknown"):
		return TypeUnknown, true
	}
	return TypeUnknown, false
}

// parseValue accepts what strconv does plus the NaN and infinity spellings
// of C runtimes, because engines format floats with printf and Prometheus
// clients are not the only writers of /metrics.
func parseValue(b []byte) (float64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	unsigned := b
	neg := false
	if b[0] == '+' || b[0] == '-' {
		neg = b[0] == '-'
		unsigned = b[1:]
	}
	if len(unsigned) > 0 && (unsigned[0] == 'n' || unsigned[0] == 'N') {
		// nan, -nan (glibc), nan(ind) and -nan(ind) (MSVC), nan(0x7ff8...)
		// (C99 n-char-sequence).
		if len(unsigned) < 3 || !equalFold(unsigned[:3], "nan") {
			return 0, false
		}
		rest := unsigned[3:]
		if len(rest) == 0 {
			return math.NaN(), true
		}
		if len(rest) < 2 || rest[0] != '(' || rest[len(rest)-1] != ')' {
			return 0, false
		}
		for _, c := range rest[1 : len(rest)-1] {
			if charClass[c]&cLabelCont == 0 {
				return 0, false
			}
		}
		return math.NaN(), true
	}
	if len(unsigned) > 3 && string(unsigned[:3]) == "1.#" {
		// Pre-2015 MSVC: 1.#INF, 1.#QNAN, -1.#IND, optionally followed by
		// digits from the precision (1.#INF00).
		rest := unsigned[3:]
		var v float64
		switch {
		case len(rest) >= 3 && equalFold(rest[:3], "inf"):
			v, rest = math.Inf(1), rest[3:]
			if neg {
				v = math.Inf(-1)
			}
		case len(rest) >= 4 && (equalFold(rest[:4], "qnan") || equalFold(rest[:4], "snan")):
			v, rest = math.NaN(), rest[4:]
		case len(rest) >= 3 && equalFold(rest[:3], "ind"):
			v, rest = math.NaN(), rest[3:]
		default:
			return 0, false
		}
		for _, c := range rest {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		return v, true
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		// Out-of-range numbers come back as ±Inf or 0 together with
		// ErrRange; that is the closest float and better than losing the
		// series.
		if errors.Is(err, strconv.ErrRange) {
			return v, true
		}
		return 0, false
	}
	return v, true
}

// Character classes, looked up instead of compared range by range because
// name scanning is the parser's hottest loop.
const (
	cNameStart  = 1 << iota // [a-zA-Z_:]
	cNameCont               // [a-zA-Z0-9_:]
	cLabelStart             // [a-zA-Z_]
	cLabelCont              // [a-zA-Z0-9_]
	cSpace                  // space, tab
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		digit := c >= '0' && c <= '9'
		if alpha || c == ':' {
			t[c] |= cNameStart | cNameCont
		}
		if digit {
			t[c] |= cNameCont | cLabelCont
		}
		if alpha {
			t[c] |= cLabelStart | cLabelCont
		}
		if c == ' ' || c == '\t' {
			t[c] |= cSpace
		}
	}
	return t
}()

func scanName(b []byte) int {
	if len(b) == 0 || charClass[b[0]]&cNameStart == 0 {
		return 0
	}
	i := 1
	for i < len(b) && charClass[b[i]]&cNameCont != 0 {
		i++
	}
	return i
}

func scanLabelName(b []byte) int {
	if len(b) == 0 || charClass[b[0]]&cLabelStart == 0 {
		return 0
	}
	i := 1
	for i < len(b) && charClass[b[i]]&cLabelCont != 0 {
		i++
	}
	return i
}

func isSpace(c byte) bool { return charClass[c]&cSpace != 0 }

func skipSpace(b []byte) []byte {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return b[i:]
}

func skipSpaceAt(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// tokenEnd returns the index of the first space at or after i.
func tokenEnd(b []byte, i int) int {
	for i < len(b) && !isSpace(b[i]) {
		i++
	}
	return i
}

func trimSpace(b []byte) []byte {
	b = skipSpace(b)
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// hasKeyword reports whether b starts with kw as a whole word.
func hasKeyword(b []byte, kw string) bool {
	return len(b) >= len(kw) && string(b[:len(kw)]) == kw && (len(b) == len(kw) || isSpace(b[len(kw)]))
}

// equalFold compares b with an all-lowercase ASCII word, ignoring case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// cutUTF8 shortens b to at most n bytes without splitting a UTF-8 sequence
// and reports whether it cut anything.
func cutUTF8(b []byte, n int) ([]byte, bool) {
	if len(b) <= n {
		return b, false
	}
	m := n
	for m > 0 && m > n-utf8.UTFMax && !utf8.RuneStart(b[m]) {
		m--
	}
	if !utf8.RuneStart(b[m]) {
		m = n // not UTF-8 anyway; any cut is as good as another
	}
	return b[:m], true
}
