package models

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultStreamHoldBytes is how much of a streamed completion's text the
// front holds back from the client until it is scanned with what follows
// it, when FrontConfig.StreamHoldBytes is zero.
const DefaultStreamHoldBytes = 128

// StreamScan scans the text of a streamed completion before the client
// sees it. text is a window of the completion: the tail of what was
// released already, then the text held back. It is called each time half
// the hold-back more than the hold-back is held, and at the end of the
// stream.
type StreamScan func(text string) StreamVerdict

// StreamVerdict is what a StreamScan decided about a window.
type StreamVerdict struct {
	// Block stops the stream: nothing more of it reaches the client, and
	// the upstream is cut. Rules name the rules that blocked it.
	Block bool
	Rules []string
	// Redacted is the window with the redacted matches replaced, when
	// Changed: the client is given the redacted text instead.
	Redacted string
	Changed  bool
}

// ErrStreamBlocked means the gateway's guardrails stopped a streamed
// completion before its text reached the client.
var ErrStreamBlocked = errors.New("models: stream blocked by the guardrails")

// guardStats is what scanning one stream cost: how many windows were
// scanned, how long the scans took in all, and how many bytes were held
// back at most.
type guardStats struct {
	Scans    int
	ScanTime time.Duration
	MaxHeld  int
}

// guardedStreamer scans a stream's text before passing it on. Every piece
// of model-generated text in a chunk is a text stream of its own, keyed by
// choice and field (streamKey): the delta's content, refusal and any other
// text member, and each tool call's arguments (by tool-call index). Each
// stream's text is held back until it is scanned, with the tail of what was
// released before it (so a pattern split across chunks is caught), and only
// the text more than hold bytes behind the newest is released; the rest
// waits for more text or the end. It scans once step (hold/2) bytes more
// than hold are held, not at every chunk: an upstream's chunks are a few
// bytes each. A window the scan blocks stops the stream (the chunk
// callback fails, which cuts the upstream) and the client gets a guardrail
// error event instead of the text; a redaction is passed on redacted.
// Tool-call and function names are scanned whole as they come (a name the
// scan blocks or would redact stops the stream). Token log-probabilities
// (choices[].logprobs) repeat the text outside these fields: they are
// dropped, as is any delta member the guard cannot read as text. Chunks
// that carry no text pass through: a role or a tool call's id, type and
// name at once (they come before the text they head), a finish reason or
// usage when no text is held, and otherwise after the text before them.
type guardedStreamer struct {
	next       streamer
	scan       StreamScan
	hold, step int

	// mu orders the bridge's chunks and the front's end of the stream.
	mu sync.Mutex

	// base is the first chunk's envelope (id, object, created, model):
	// the chunks the guard writes carry it.
	base    map[string]any
	streams map[streamKey]*guardedText
	queued  [][]byte
	blocked *StreamVerdict
	stats   guardStats
}

// streamKey names one text stream of a completion: a choice's delta member
// (field), or, when field is toolCallsField, the arguments of the choice's
// tool call number tool; functionCallField is the legacy function call's
// arguments.
type streamKey struct {
	choice int
	field  string
	tool   int
}

const (
	toolCallsField    = "tool_calls"
	functionCallField = "function_call"
)

// guardedText is one text stream: the tail released, the text held.
type guardedText struct {
	tail, held string
}

func newGuardedStreamer(next streamer, scan StreamScan, hold int) *guardedStreamer {
	if hold <= 0 {
		hold = DefaultStreamHoldBytes
	}
	return &guardedStreamer{next: next, scan: scan, hold: hold, step: max(hold/2, 1), streams: map[streamKey]*guardedText{}}
}

func (g *guardedStreamer) chunk(data []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.blocked != nil {
		return g.blockedErr()
	}
	var ch map[string]any
	if err := json.Unmarshal(data, &ch); err != nil {
		// The bridge parsed every chunk it hands on; one that does not
		// parse here carries nothing the guard could check.
		return fmt.Errorf("%w: a chunk the guard cannot read: %v", ErrStreamBlocked, err)
	}
	if g.base == nil {
		g.base = maps.Clone(ch)
		delete(g.base, "choices")
		delete(g.base, "usage")
	}
	texts, names, rest, lead := splitText(ch)
	for _, n := range names {
		if err := g.scanName(n); err != nil {
			return err
		}
	}
	if rest != nil {
		// A role or a tool call's header goes at once (it heads text that
		// may still be held); what goes with the text waits for it (a
		// finish reason, usage).
		if lead && len(g.queued) == 0 || !lead && !g.holding() && len(texts) == 0 {
			if err := g.next.chunk(rest); err != nil {
				return err
			}
		} else {
			g.queued = append(g.queued, rest)
		}
	}
	for _, t := range texts {
		c := g.stream(t.key)
		c.held += t.text
	}
	for _, t := range texts {
		if err := g.release(t.key, false); err != nil {
			return err
		}
	}
	return nil
}

// scanName scans a tool call's (or function call's) name: it comes whole
// in one chunk, and cannot be sent redacted.
func (g *guardedStreamer) scanName(name string) error {
	start := time.Now()
	v := g.scan(name)
	g.stats.Scans++
	g.stats.ScanTime += time.Since(start)
	if v.Block || v.Changed {
		v.Block = true
		g.blocked = &v
		return fmt.Errorf("%w: in a tool call's name", g.blockedErr())
	}
	return nil
}

func (g *guardedStreamer) stream(k streamKey) *guardedText {
	c := g.streams[k]
	if c == nil {
		c = &guardedText{}
		g.streams[k] = c
	}
	return c
}

// holding reports whether any stream holds text back.
func (g *guardedStreamer) holding() bool {
	for _, c := range g.streams {
		if c.held != "" {
			return true
		}
	}
	return false
}

// release scans stream k's window once it holds more than hold+step bytes
// (or, at the end, whatever it holds) and passes on what may go: the text
// more than hold bytes behind the newest. A redaction is sent redacted once
// the redacted span ends before that line (while it ends after it, the
// match may still grow with the next chunk: only the text before it goes),
// and what stays held is kept as the upstream sent it, so that it is
// redacted again with what follows.
func (g *guardedStreamer) release(k streamKey, end bool) error {
	c := g.streams[k]
	g.stats.MaxHeld = max(g.stats.MaxHeld, len(c.held))
	if c.held == "" || !end && len(c.held) <= g.hold+g.step {
		return nil
	}
	window := c.tail + c.held
	start := time.Now()
	v := g.scan(window)
	g.stats.Scans++
	g.stats.ScanTime += time.Since(start)
	if v.Block {
		g.blocked = &v
		return g.blockedErr()
	}
	red := window
	if v.Changed {
		red = v.Redacted
	}
	// The window and its redaction agree on a prefix and a suffix; the
	// redacted spans lie between.
	pre := commonPrefix(window, red)
	suf := commonSuffix(window[pre:], red[pre:])
	if pre < len(c.tail) {
		// What was sent is out: a redaction must lie in what is held.
		g.blocked = &StreamVerdict{Block: true, Rules: v.Rules}
		return fmt.Errorf("%w: a redacted match reaches into text already streamed", g.blockedErr())
	}
	line := len(window)
	if !end {
		line = runeStart(window, len(window)-g.hold)
	}
	var out string
	if changedEnd := len(window) - suf; pre < len(window) && changedEnd > line {
		// A redacted span reaches past the line: send what is before it.
		cut := max(runeStart(window, min(pre, line)), len(c.tail))
		out, c.held = window[len(c.tail):cut], window[cut:]
	} else {
		rline := line - len(window) + len(red)
		out, c.held = red[len(c.tail):rline], window[line:]
	}
	if out == "" {
		return nil
	}
	released := c.tail + out
	c.tail = released[runeStart(released, len(released)-g.hold):]
	b, err := json.Marshal(g.textChunk(k, out))
	if err != nil {
		return fmt.Errorf("models: encode a released chunk: %w", err)
	}
	return g.next.chunk(b)
}

// commonPrefix is the length of the longest common prefix of a and b, in
// whole runes.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	if n < len(a) {
		n = runeStart(a, n)
	}
	return n
}

// commonSuffix is the length of the longest common suffix of a and b.
func commonSuffix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return n
}

// runeStart is the largest index <= i (and >= 0) that starts a rune of s.
func runeStart(s string, i int) int {
	if i <= 0 {
		return 0
	}
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}

// textChunk is a chunk carrying text released from stream k.
func (g *guardedStreamer) textChunk(k streamKey, text string) map[string]any {
	out := maps.Clone(g.base)
	if out == nil {
		out = map[string]any{}
	}
	var delta map[string]any
	switch k.field {
	case toolCallsField:
		delta = map[string]any{toolCallsField: []any{map[string]any{"index": k.tool, "function": map[string]any{"arguments": text}}}}
	case functionCallField:
		delta = map[string]any{functionCallField: map[string]any{"arguments": text}}
	default:
		delta = map[string]any{k.field: text}
	}
	out["choices"] = []any{map[string]any{"index": k.choice, "delta": delta, "finish_reason": nil}}
	return out
}

func (g *guardedStreamer) blockedErr() error {
	return fmt.Errorf("%w (%s)", ErrStreamBlocked, strings.Join(g.blocked.Rules, ", "))
}

// flush scans and releases everything held, then the chunks that waited
// for it.
func (g *guardedStreamer) flush() error {
	keys := make([]streamKey, 0, len(g.streams))
	for k := range g.streams {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b streamKey) int {
		return cmp.Or(cmp.Compare(a.choice, b.choice), strings.Compare(a.field, b.field), cmp.Compare(a.tool, b.tool))
	})
	for _, k := range keys {
		if err := g.release(k, true); err != nil {
			return err
		}
	}
	for _, q := range g.queued {
		if err := g.next.chunk(q); err != nil {
			return err
		}
	}
	g.queued = nil
	return nil
}

func (g *guardedStreamer) done(completion map[string]any, replayed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.blocked == nil && g.flush() == nil {
		g.next.done(completion, replayed)
		return
	}
	if g.blocked != nil {
		g.failBlocked()
		return
	}
	g.next.fail("unavailable", "the stream could not be written")
}

func (g *guardedStreamer) fail(code, msg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.blocked != nil {
		g.failBlocked()
		return
	}
	// What is held was never released; it stays unreleased.
	g.next.fail(code, msg)
}

func (g *guardedStreamer) failBlocked() {
	g.next.fail("guardrail", fmt.Sprintf("the gateway's guardrails stopped the completion (%s); what was held back was not sent",
		strings.Join(g.blocked.Rules, ", ")))
}

// streamText is the text a chunk adds to one stream.
type streamText struct {
	key  streamKey
	text string
}

// indexOf reads a choice's or tool call's index (0 when absent or not a
// non-negative integer).
func indexOf(v any) int {
	if f, ok := v.(float64); ok && f >= 0 && f <= 1<<30 && f == float64(int(f)) {
		return int(f)
	}
	return 0
}

// splitText takes the model-generated text out of a chunk's choices:
// every text member of a delta (content, refusal, reasoning text, …) and
// the arguments of each tool call (and of a legacy function call); names
// are the tool and function names, to scan whole. rest is the chunk
// without the text, encoded, when it still carries something (a role, a
// tool call's id, type and name, a finish reason, usage); nil when it
// carried only text. Log-probabilities and delta members that are neither
// text nor a role or tool call are dropped. lead is set when rest carries
// nothing but roles and tool-call headers, which come before the text.
func splitText(ch map[string]any) (texts []streamText, names []string, rest []byte, lead bool) {
	choices, _ := ch["choices"].([]any)
	keep, lead := false, true
	if ch["usage"] != nil {
		keep, lead = true, false
	}
	stripped := make([]any, 0, len(choices))
	for _, c := range choices {
		o, ok := c.(map[string]any)
		if !ok {
			continue
		}
		idx := indexOf(o["index"])
		o = maps.Clone(o)
		delete(o, "logprobs")
		if d, ok := o["delta"].(map[string]any); ok {
			nd := make(map[string]any, 1)
			for k, v := range d {
				switch k {
				case "role":
					if v != nil {
						nd[k] = v
					}
				case toolCallsField:
					calls, _ := v.([]any)
					var heads []any
					for _, tc := range calls {
						t, ok := tc.(map[string]any)
						if !ok {
							continue
						}
						ti := indexOf(t["index"])
						head := maps.Clone(t)
						if fn, ok := t["function"].(map[string]any); ok {
							fnHead, n := splitCall(fn, streamKey{choice: idx, field: toolCallsField, tool: ti}, &texts)
							names = append(names, n...)
							head["function"] = fnHead
							if len(fnHead) == 0 {
								delete(head, "function")
							}
						}
						if len(head) > 1 || head["index"] == nil && len(head) > 0 {
							heads = append(heads, head)
						}
					}
					if len(heads) > 0 {
						nd[k] = heads
					}
				case functionCallField:
					if fn, ok := v.(map[string]any); ok {
						fnHead, n := splitCall(fn, streamKey{choice: idx, field: functionCallField}, &texts)
						names = append(names, n...)
						if len(fnHead) > 0 {
							nd[k] = fnHead
						}
					}
				default:
					// Any other member is text (content, refusal, reasoning),
					// or content parts, or dropped.
					var t string
					switch tv := v.(type) {
					case string:
						t = tv
					case []any:
						t = textOf(tv)
					}
					if t != "" {
						texts = append(texts, streamText{key: streamKey{choice: idx, field: k}, text: t})
					}
				}
			}
			o["delta"] = nd
			if len(nd) > 0 {
				keep = true
			}
		}
		if o["finish_reason"] != nil {
			keep, lead = true, false
		}
		stripped = append(stripped, o)
	}
	if !keep && len(texts) > 0 {
		return texts, names, nil, false
	}
	out := maps.Clone(ch)
	if choices != nil {
		out["choices"] = stripped
	}
	b, err := json.Marshal(out)
	if err != nil {
		return texts, names, nil, false
	}
	return texts, names, b, lead
}

// splitCall takes a function call's arguments out as text of stream k;
// head is the rest (its name), names the name to scan.
func splitCall(fn map[string]any, k streamKey, texts *[]streamText) (head map[string]any, names []string) {
	head = make(map[string]any, 1)
	for fk, fv := range fn {
		s, _ := fv.(string)
		switch {
		case fk == "arguments":
			if s != "" {
				*texts = append(*texts, streamText{key: k, text: s})
			}
		case fk == "name" && s != "":
			head[fk] = s
			names = append(names, s)
		}
	}
	return head, names
}
