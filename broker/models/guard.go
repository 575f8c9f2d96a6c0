package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
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

// guardedStreamer scans a stream's text before passing it on: each choice's
// text is held back until it is scanned, with the tail of what was released
// before it (so a pattern split across chunks is caught), and only the text
// more than hold bytes behind the newest is released; the rest waits for
// more text or the end. It scans once step (hold/2) bytes more than hold
// are held, not at every chunk: an upstream's chunks are a few bytes each.
// A window the scan blocks stops the stream (the chunk callback fails,
// which cuts the upstream) and the client gets a guardrail error event
// instead of the text; a redaction is passed on redacted. Chunks that carry no text (a role, a finish reason, usage)
// pass through when no text is held, and otherwise wait for the text
// before them.
type guardedStreamer struct {
	next       streamer
	scan       StreamScan
	hold, step int

	// mu orders the bridge's chunks and the front's end of the stream.
	mu sync.Mutex

	// base is the first chunk's envelope (id, object, created, model):
	// the chunks the guard writes carry it.
	base    map[string]any
	choices map[int]*guardedChoice
	queued  [][]byte
	blocked *StreamVerdict
	stats   guardStats
}

// guardedChoice is one choice's text: the tail released, the text held.
type guardedChoice struct {
	tail, held string
}

func newGuardedStreamer(next streamer, scan StreamScan, hold int) *guardedStreamer {
	if hold <= 0 {
		hold = DefaultStreamHoldBytes
	}
	return &guardedStreamer{next: next, scan: scan, hold: hold, step: max(hold/2, 1), choices: map[int]*guardedChoice{}}
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
	texts, rest, lead := splitText(ch)
	if rest != nil {
		// What goes with the text waits for it (a finish reason, usage);
		// a role goes ahead of it, unless text before it is held.
		if g.holding() || len(texts) > 0 && !lead {
			g.queued = append(g.queued, rest)
		} else if err := g.next.chunk(rest); err != nil {
			return err
		}
	}
	for _, t := range texts {
		c := g.choice(t.index)
		c.held += t.text
	}
	for _, t := range texts {
		if err := g.release(t.index, false); err != nil {
			return err
		}
	}
	return nil
}

func (g *guardedStreamer) choice(i int) *guardedChoice {
	c := g.choices[i]
	if c == nil {
		c = &guardedChoice{}
		g.choices[i] = c
	}
	return c
}

// holding reports whether any choice holds text back.
func (g *guardedStreamer) holding() bool {
	for _, c := range g.choices {
		if c.held != "" {
			return true
		}
	}
	return false
}

// release scans choice i's window once it holds more than hold+step bytes
// (or, at the end, whatever it holds) and passes on what may go: the text
// more than hold bytes behind the newest. A redaction is sent redacted once
// the redacted span ends before that line (while it ends after it, the
// match may still grow with the next chunk: only the text before it goes),
// and what stays held is kept as the upstream sent it, so that it is
// redacted again with what follows.
func (g *guardedStreamer) release(i int, end bool) error {
	c := g.choices[i]
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
	b, err := json.Marshal(g.textChunk(i, out))
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

func (g *guardedStreamer) textChunk(i int, text string) map[string]any {
	out := maps.Clone(g.base)
	if out == nil {
		out = map[string]any{}
	}
	out["choices"] = []any{map[string]any{"index": i, "delta": map[string]any{"content": text}, "finish_reason": nil}}
	return out
}

func (g *guardedStreamer) blockedErr() error {
	return fmt.Errorf("%w (%s)", ErrStreamBlocked, strings.Join(g.blocked.Rules, ", "))
}

// flush scans and releases everything held, then the chunks that waited
// for it.
func (g *guardedStreamer) flush() error {
	idx := make([]int, 0, len(g.choices))
	for i := range g.choices {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		if err := g.release(i, true); err != nil {
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

// choiceText is the text a chunk adds to one choice.
type choiceText struct {
	index int
	text  string
}

// splitText takes the text out of a chunk's choices. rest is the chunk
// without it, encoded, when it still carries something (a role, a finish
// reason, tool calls, usage); nil when it carried only text. lead is set
// when rest carries nothing but roles, which come before a choice's text.
func splitText(ch map[string]any) (texts []choiceText, rest []byte, lead bool) {
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
		idx := 0
		if f, ok := o["index"].(float64); ok && f >= 0 && f == float64(int(f)) {
			idx = int(f)
		}
		o = maps.Clone(o)
		if d, ok := o["delta"].(map[string]any); ok {
			if t := textOf(d["content"]); t != "" {
				texts = append(texts, choiceText{index: idx, text: t})
			}
			d = maps.Clone(d)
			delete(d, "content")
			o["delta"] = d
			for k, v := range d {
				if v == nil {
					continue
				}
				keep = true
				if k != "role" {
					lead = false
				}
			}
		}
		if o["finish_reason"] != nil || o["logprobs"] != nil {
			keep, lead = true, false
		}
		stripped = append(stripped, o)
	}
	if !keep && len(texts) > 0 {
		return texts, nil, false
	}
	out := maps.Clone(ch)
	if choices != nil {
		out["choices"] = stripped
	}
	b, err := json.Marshal(out)
	if err != nil {
		return texts, nil, false
	}
	return texts, b, lead
}
