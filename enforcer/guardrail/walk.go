package guardrail

import (
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/tollgate/tollgate/enforcer/guardrail/internal/decode"
)

// frame is one level of the JSON being walked.
type frame struct {
	obj  bool
	name string // the member being read, in an object
	idx  int64  // the element being read, in an array
}

// token is the string being scanned: where it is in the message.
type token struct {
	s          string // its decoded value
	start, end int    // its span in the raw message, quotes included
	key        bool
	// fixed: nothing in it can be redacted in place (the whole message
	// scanned as text).
	fixed bool
	// fileBytes: the string is a file's content in base64; a redaction
	// replaces the content, re-encoded, so the part stays valid.
	fileBytes bool
	path      string
	pathBuilt bool
	frames    []frame
}

func (t *token) pointer() string {
	if t.pathBuilt {
		return t.path
	}
	var b strings.Builder
	for _, f := range t.frames {
		b.WriteByte('/')
		if f.obj {
			b.WriteString(escapePointer(f.name))
		} else {
			b.WriteString(strconv.FormatInt(f.idx, 10))
		}
	}
	t.path, t.pathBuilt = b.String(), true
	return t.path
}

func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// fileBytesKey reports the members that carry a file's content in base64
// (A2A v1.0 "raw", v0.3 "bytes", v0.3 protobuf JSON "fileWithBytes").
func fileBytesKey(name string) bool {
	switch name {
	case "raw", "bytes", "fileWithBytes":
		return true
	}
	return false
}

// a2aName reports the member names of the A2A v0.3 and v1.0 objects. As
// keys they are known text, so they are not scanned (their values are).
func a2aName(name string) bool {
	switch name {
	case "kind", "messageId", "role", "parts", "text", "data", "file", "name", "mimeType", "uri", "bytes",
		"metadata", "contextId", "taskId", "referenceTaskIds", "extensions", "id", "status", "state",
		"message", "timestamp", "artifacts", "artifactId", "description", "history", "raw", "url",
		"filename", "mediaType", "fileWithUri", "fileWithBytes", "content", "append", "lastChunk", "final":
		return true
	}
	return false
}

// callKey reports members that hold a structured tool call.
func callKey(name string) bool {
	switch name {
	case "function_call", "tool_calls", "tool_use", "functionCall", "toolCalls":
		return true
	}
	return false
}

// walkOptions read a message as leniently as the agents' JSON libraries
// may: duplicate names and invalid UTF-8 are scanned, not refused.
var walkOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// scanMessage walks the JSON message and scans every string in it, keys
// included. Invalid JSON is scanned as text.
func (s *scanner) scanMessage(raw []byte) {
	if len(raw) == 0 {
		return
	}
	if len(raw) > s.lim.MaxBytes {
		s.truncate()
		return
	}
	s.src.Reset(raw)
	s.dec.Reset(&s.src, walkOptions...) // Reset drops options: pass them again
	defer func() {
		s.src.Reset(nil) // a pooled scanner holds no message
		s.dec.Reset(&s.src, walkOptions...)
	}()
	dec := s.dec
	frames := s.frames[:0]
	var buf []byte
	for {
		depth := dec.StackDepth()
		kind, length := dec.StackIndex(depth)
		isName := kind == '{' && length%2 == 0
		if kind == '[' && len(frames) > 0 {
			frames[len(frames)-1].idx = length
		}
		switch dec.PeekKind() {
		case '{', '[':
			if depth >= s.lim.MaxDepth {
				if err := dec.SkipValue(); err != nil {
					s.malformed(raw)
					return
				}
				s.truncate()
				continue
			}
			tok, err := dec.ReadToken()
			if err != nil {
				s.malformed(raw)
				return
			}
			frames = append(frames, frame{obj: tok.Kind() == '{'})
		case '}', ']':
			if _, err := dec.ReadToken(); err != nil {
				s.malformed(raw)
				return
			}
			frames = frames[:len(frames)-1]
		case '"':
			v, err := dec.ReadValue()
			if err != nil {
				s.malformed(raw)
				return
			}
			end := int(dec.InputOffset())
			start := end - len(v)
			buf, err = jsontext.AppendUnquote(buf[:0], v)
			if err != nil {
				buf = append(buf[:0], v[1:len(v)-1]...)
			}
			str := string(buf)
			if isName {
				frames[len(frames)-1].name = str
				s.scanName(str, start, end, frames, dec.PeekKind())
				continue
			}
			s.scanValue(str, start, end, frames)
		case 0:
			// End of input or a syntax error.
			if _, err := dec.ReadToken(); err == nil || depth > 0 || !isEOF(err) {
				s.malformed(raw)
			}
			s.frames = frames
			return
		default:
			if _, err := dec.ReadValue(); err != nil {
				s.malformed(raw)
				return
			}
		}
		if dec.StackDepth() == 0 {
			// One top-level value only: anything after it is malformed.
			if _, err := dec.ReadToken(); !isEOF(err) {
				s.malformed(raw)
			}
			s.frames = frames
			return
		}
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// scanName scans an object key. next is the kind of its value.
func (s *scanner) scanName(name string, start, end int, frames []frame, next jsontext.Kind) {
	tok := &s.cur
	*tok = token{s: name, start: start, end: end, key: true, frames: frames}
	if !a2aName(name) {
		s.scanToken(tok)
	}
	if callKey(name) && (next == '{' || next == '[') {
		s.addSignal(RuleStructuredCall, tok, "", name)
	}
}

// scanValue scans a string value.
func (s *scanner) scanValue(v string, start, end int, frames []frame) {
	tok := &s.cur
	*tok = token{s: v, start: start, end: end, frames: frames}
	if len(frames) > 0 && frames[len(frames)-1].obj {
		name := frames[len(frames)-1].name
		if fileBytesKey(name) {
			s.scanFileBytes(tok)
			return
		}
		if name == "method" && strings.HasPrefix(strings.TrimSpace(v), "tools/call") {
			s.addSignal(RuleStructuredCall, tok, "", v)
		}
	}
	s.scanToken(tok)
}

// scanFileBytes scans the content of a file part when it is text; binary
// content is not scanned.
func (s *scanner) scanFileBytes(tok *token) {
	tok.fileBytes = true
	l, ok := decode.FileBytesLayer(tok.s, &s.budget)
	if s.budget.Exhausted {
		s.truncate()
	}
	if !ok {
		return
	}
	s.tok = tok
	s.scanText(l.Text, 1, l.Kind.String(), func(i, j int) (int, int) { return 0, len(tok.s) })
}

// scanToken scans one string of the message.
func (s *scanner) scanToken(tok *token) {
	if tok.s == "" {
		return
	}
	s.tok = tok
	s.scanText(tok.s, 0, "", identity)
}

func identity(i, j int) (int, int) { return i, j }

// malformed records that the message is not valid JSON and scans it as
// text, so that what it says is still judged.
func (s *scanner) malformed(raw []byte) {
	if s.res.Malformed {
		return
	}
	s.res.Malformed = true
	tok := &token{s: string(raw), start: 0, end: len(raw), pathBuilt: true, fixed: true}
	s.addSignal(RuleMalformed, tok, "", "")
	s.tok = tok
	s.scanText(tok.s, 0, "", identity)
}
