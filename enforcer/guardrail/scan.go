package guardrail

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/tollgate/tollgate/enforcer/guardrail/internal/decode"
	"github.com/tollgate/tollgate/enforcer/guardrail/internal/textnorm"
)

const (
	// windowAt is the text length from which patterns run only in windows
	// around their keywords, and window how far a window reaches on each
	// side of a keyword (well beyond the longest match a pattern allows).
	windowAt = 4096
	window   = 1024
	// reach bounds an anchored run: every repetition in the patterns is
	// bounded, so no match is longer. attemptCost is what an anchored run
	// is charged against Limits.MaxPatternBytes: most stop within a few
	// bytes of their keyword.
	reach       = 512
	attemptCost = 64
	// maxMatches bounds the matches of one pattern in one text.
	maxMatches = 16
)

// scanner holds the state of one scan. Engines pool them.
type scanner struct {
	e   *Engine
	lim Limits
	tab *table
	res *Result

	// src and dec read the message being walked; reset for each one
	// (scanMessage), since a new decoder costs more than many walks.
	src bytes.Reader
	dec *jsontext.Decoder

	norm     textnorm.Normalizer
	budget   decode.Budget
	textLeft int
	// patternLeft is how many more bytes the patterns may be run over.
	patternLeft int

	hits    []hit
	found   []uint32 // per keyword: the stamp of the last text it was found in
	groups  []uint32 // per keyword group: the stamp of the last text one of its keywords was found in
	touched []uint32 // per pattern: the stamp of the last text it was considered for
	cands   []*pattern
	stamp   uint32

	frames []frame
	tok    *token
	cur    token // the token being scanned, reused; copied when an edit keeps it

	index     map[findingKey]int
	strongest Action
	edits     map[int]*tokenEdit
	truncated bool
}

type findingKey struct {
	rule  int
	start int
	key   bool
}

// tokenEdit is what redaction replaces in one string of the message.
type tokenEdit struct {
	tok   *token
	spans []span
}

type span struct {
	start, end int
	rule       string
}

func newScanner(e *Engine) *scanner {
	s := &scanner{
		e: e, lim: e.lim,
		found:   make([]uint32, len(e.kw.words)),
		groups:  make([]uint32, e.kw.ngroups),
		touched: make([]uint32, len(e.patterns)),
	}
	s.dec = jsontext.NewDecoder(&s.src, walkOptions...)
	return s
}

func (s *scanner) reset(tab *table, res *Result) {
	s.tab, s.res, s.tok = tab, res, nil
	s.budget = decode.Budget{Left: s.lim.MaxDecodedBytes}
	s.textLeft = s.lim.MaxTextBytes
	s.patternLeft = s.lim.MaxPatternBytes
	s.strongest = ""
	s.truncated = false
	clear(s.index)
	clear(s.edits)
	if s.index == nil {
		s.index = map[findingKey]int{}
		s.edits = map[int]*tokenEdit{}
	}
}

func (s *scanner) truncate() {
	if s.truncated {
		return
	}
	s.truncated = true
	s.addSignal(RuleTruncated, &token{pathBuilt: true, fixed: true}, "", "")
}

// match is one rule matching in the string being scanned.
type match struct {
	r *rule
	// start and end are the span of the match in the token's string.
	start, end int
	layer      string
	// text is the matched text where it matched (a decoded layer's text
	// for a layer): the excerpt and the digest are taken from it.
	text string
}

// scanText matches text against every rule and scans the layers hidden
// in it. depth is the layer depth (0 for a string of the message), layer
// names the layers so far, and toToken maps a span of text to the span of
// the token's string it came from. It reports whether an instruction rule
// matched in text or below.
func (s *scanner) scanText(text string, depth int, layer string, toToken func(i, j int) (int, int)) bool {
	if s.textLeft <= 0 {
		s.truncate()
		return false
	}
	if len(text) > s.textLeft {
		cut := s.textLeft
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
		s.truncate()
	}
	s.textLeft -= len(text)
	s.res.ScannedBytes += len(text)

	t := s.norm.Normalize(text)
	instr := s.matchPatterns(&t, text, layer, toToken)
	rot13 := depth < s.lim.MaxDecodeDepth && s.rot13()

	for _, m := range t.Marks {
		id := RuleZeroWidth
		switch m.Kind {
		case textnorm.MarkBidi:
			id = RuleBidiControl
		case textnorm.MarkHomoglyph:
			id = RuleHomoglyph
		}
		ms, me := m.Start, m.End
		s.addAt(id, func() (int, int) { return toToken(ms, me) }, layer, text[ms:me])
	}
	if t.Bidi > 0 && len(t.Marks) == 0 {
		// Only closing controls: nothing to locate.
		s.addAt(RuleBidiControl, func() (int, int) { return toToken(0, len(text)) }, layer, text)
	}
	if t.Tags != "" {
		ts, te := t.TagStart, t.TagEnd
		s.addAt(RuleUnicodeTags, func() (int, int) { return toToken(ts, te) }, layer, t.Tags)
		sub := func(i, j int) (int, int) { return toToken(ts, te) }
		if s.scanText(t.Tags, depth+1, joinLayer(layer, decode.UnicodeTags.String()), sub) {
			instr = true
		}
	}
	if depth >= s.lim.MaxDecodeDepth {
		return instr
	}
	layers := decode.Find(nil, text, &s.budget)
	if rot13 {
		layers = append(layers, decode.Layer{Kind: decode.Rot13, Start: 0, End: len(text), Text: decode.DecodeRot13(text)})
	}
	if s.budget.Exhausted {
		s.truncate()
	}
	for i := range layers {
		l := &layers[i]
		sub := func(a, b int) (int, int) {
			if l.Kind == decode.Rot13 {
				return toToken(a, b)
			}
			return toToken(l.Span(a, b))
		}
		if !s.scanText(l.Text, depth+1, joinLayer(layer, l.Kind.String()), sub) {
			continue
		}
		instr = true
		id := RuleEncodedInstruction
		if l.Kind.Comment() {
			id = RuleCommentInstruction
		}
		ls, le := l.Start, l.End
		s.addAt(id, func() (int, int) { return toToken(ls, le) }, joinLayer(layer, l.Kind.String()), l.Text)
	}
	return instr
}

func joinLayer(outer, inner string) string {
	if outer == "" {
		return inner
	}
	return outer + "/" + inner
}

// rot13 reports whether the text just matched looks like rot13: it holds
// the rot13 form of at least two instruction keywords, or says "rot13".
func (s *scanner) rot13() bool {
	n := 0
	for _, h := range s.hits {
		if s.e.kw.rot13[h.kw] {
			if h.kw < rot13Hints {
				return true
			}
			n++
			if n >= 2 {
				return true
			}
		}
	}
	return false
}

// rot13Hints is the number of keywords that say "rot13" (the first ones).
const rot13Hints = 3

// matchPatterns runs the prefilter and the patterns it selects.
func (s *scanner) matchPatterns(t *textnorm.Text, text, layer string, toToken func(i, j int) (int, int)) bool {
	// Room for a hit per byte: the positions are all kept unless a text
	// is made of keywords that end where others end.
	stamp, complete := s.findKeywords(t.S, len(t.S)+256)
	cands := s.cands[:0]
	for _, h := range s.hits {
		for _, p := range s.e.kw.pats[h.kw] {
			if s.touched[p.id] != stamp {
				s.touched[p.id] = stamp
				cands = append(cands, p)
			}
		}
	}
	s.cands = cands
	if !complete {
		// Too many hits to track: every pattern is a candidate.
		cands = s.e.patterns
	}
	instr := false
	for _, p := range cands {
		if s.patternLeft <= 0 {
			break
		}
		if complete && !s.groupsFound(p, stamp) {
			continue
		}
		for _, m := range s.run(p, t.S, complete) {
			a, b := m[0], m[1]
			if p.rule.veto != nil && p.rule.veto.MatchString(t.S[a:b]) {
				continue
			}
			ss, se := t.Span(a, b)
			if ss >= se {
				continue
			}
			ts, te := toToken(ss, se)
			s.add(match{r: p.rule, start: ts, end: te, layer: layer, text: text[ss:se]})
			if p.rule.instruction {
				instr = true
			}
		}
	}
	return instr
}

// findKeywords runs the prefilter over text: s.hits lists the keywords
// found, and the returned stamp marks them and their groups as found.
// complete is false when there were more than max hits.
func (s *scanner) findKeywords(text string, max int) (stamp uint32, complete bool) {
	s.stamp++
	if s.stamp == 0 {
		clear(s.found)
		clear(s.groups)
		clear(s.touched)
		s.stamp = 1
	}
	stamp = s.stamp
	kw := s.e.kw
	s.hits, complete = kw.scan(text, s.hits[:0], max)
	for _, h := range s.hits {
		if s.found[h.kw] == stamp {
			continue
		}
		s.found[h.kw] = stamp
		for _, g := range kw.groupsOf[h.kw] {
			s.groups[g] = stamp
		}
	}
	return stamp, complete
}

func (s *scanner) groupsFound(p *pattern, stamp uint32) bool {
	for _, g := range p.groupIDs {
		if s.groups[g] != stamp {
			return false
		}
	}
	return true
}

// run finds the matches of p in text: in the whole text when it is short
// (or the hits are incomplete), else in windows around the keywords of
// p's first group, which every match contains.
func (s *scanner) run(p *pattern, text string, complete bool) [][]int {
	if p.lineStart && complete {
		return s.runLines(p, text)
	}
	if p.anchored != nil && complete {
		return s.runAnchored(p, text)
	}
	if len(text) < windowAt || !complete {
		if !s.spend(len(text)) {
			return nil
		}
		return p.re.FindAllStringIndex(text, maxMatches)
	}
	var wins [][2]int
	g := p.groups[0]
	for _, h := range s.hits {
		if !containsKW(g, h.kw) {
			continue
		}
		start, end := max(int(h.end)-window, 0), min(int(h.end)+window, len(text))
		if n := len(wins); n > 0 && start <= wins[n-1][1] {
			wins[n-1][1] = end
			continue
		}
		wins = append(wins, [2]int{start, end})
	}
	var out [][]int
	for _, w := range wins {
		start, end := w[0], w[1]
		// Start at a line start when one is near, for the patterns
		// anchored there.
		if start > 0 {
			from := max(start-256, 0)
			if nl := strings.LastIndexByte(text[from:start], '\n'); nl >= 0 {
				start = from + nl
			}
		}
		for start > 0 && start < len(text) && !utf8.RuneStart(text[start]) {
			start++
		}
		for end < len(text) && end > start && !utf8.RuneStart(text[end]) {
			end--
		}
		if start >= end {
			continue
		}
		if !s.spend(end - start) {
			return out
		}
		for _, m := range p.re.FindAllStringIndex(text[start:end], maxMatches) {
			out = append(out, []int{m[0] + start, m[1] + start})
			if len(out) >= maxMatches {
				return out
			}
		}
	}
	return out
}

// runAnchored runs p's anchored form from every place one of its leads
// starts, within a window, and keeps the leftmost non-overlapping matches.
func (s *scanner) runAnchored(p *pattern, text string) [][]int {
	var out [][]int
	kw := s.e.kw
	for _, h := range s.hits {
		if !containsKW(p.leads, h.kw) {
			continue
		}
		start := int(h.end) - len(kw.words[h.kw])
		if p.wordStart && start > 0 && isWordByte(text[start-1]) {
			continue
		}
		end := min(start+reach, len(text))
		for end < len(text) && end > start && !utf8.RuneStart(text[end]) {
			end--
		}
		if !s.spend(min(end-start, attemptCost)) {
			break
		}
		m := p.anchored.FindStringIndex(text[start:end])
		if m == nil {
			continue
		}
		out = append(out, []int{start + m[0], start + m[1]})
		if len(out) >= maxMatches {
			break
		}
	}
	if len(out) < 2 {
		return out
	}
	// Hits come by end offset: order the matches and drop overlaps.
	slices.SortFunc(out, func(a, b []int) int { return a[0] - b[0] })
	kept := out[:1]
	for _, m := range out[1:] {
		if m[0] >= kept[len(kept)-1][1] {
			kept = append(kept, m)
		}
	}
	return kept
}

// lineReach is how far before a keyword the line start of a line-start
// pattern may be: the markers before a role name are short.
const lineReach = 64

// runLines runs p's anchored form from the start of each line that has a
// keyword of p's first group near its start.
func (s *scanner) runLines(p *pattern, text string) [][]int {
	var out [][]int
	last := -1
	g := p.groups[0]
	for _, h := range s.hits {
		if !containsKW(g, h.kw) {
			continue
		}
		from := max(int(h.end)-len(s.e.kw.words[h.kw])-lineReach, 0)
		start := strings.LastIndexByte(text[from:int(h.end)], '\n')
		switch {
		case start >= 0:
			start += from
		case from == 0:
			start = 0
		default:
			continue
		}
		if start <= last {
			continue
		}
		last = start
		end := min(start+reach, len(text))
		for end < len(text) && end > start && !utf8.RuneStart(text[end]) {
			end--
		}
		if !s.spend(min(end-start, attemptCost)) {
			break
		}
		if m := p.anchored.FindStringIndex(text[start:end]); m != nil {
			out = append(out, []int{start + m[0], start + m[1]})
			if len(out) >= maxMatches {
				break
			}
		}
	}
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// spend takes n bytes of pattern work from the message's allowance; when
// it is used up the scan is truncated and no more patterns run.
func (s *scanner) spend(n int) bool {
	if n > s.patternLeft {
		s.patternLeft = 0
		s.truncate()
		return false
	}
	s.patternLeft -= n
	return true
}

func containsKW(g []int32, kw int32) bool {
	for _, k := range g {
		if k == kw {
			return true
		}
	}
	return false
}

// addAt records a finding of a rule the engine reports itself, located
// by a span of the current token.
func (s *scanner) addAt(id string, at func() (int, int), layer, text string) {
	r := s.e.rule(id)
	a, b := at()
	s.add(match{r: r, start: a, end: b, layer: layer, text: text})
}

// addSignal records a finding on a whole token.
func (s *scanner) addSignal(id string, tok *token, layer, text string) {
	prev := s.tok
	s.tok = tok
	s.add(match{r: s.e.rule(id), start: 0, end: len(tok.s), layer: layer, text: text})
	s.tok = prev
}

// add applies the policy to a match and records it.
func (s *scanner) add(m match) {
	act := s.tab.actions[m.r.index]
	if act == Off || act == "" {
		return
	}
	tok := s.tok
	if act == Redact && (tok.key || tok.fixed) {
		act = Block
	}
	if act.rank() > s.strongest.rank() {
		s.strongest = act
	}
	if act == Redact {
		e := s.edits[tok.start]
		if e == nil {
			kept := *tok
			kept.frames = nil
			e = &tokenEdit{tok: &kept}
			s.edits[tok.start] = e
		}
		e.spans = append(e.spans, span{start: m.start, end: m.end, rule: m.r.ID})
	}
	k := findingKey{rule: m.r.index, start: tok.start, key: tok.key}
	if i, ok := s.index[k]; ok {
		s.res.Findings[i].Count++
		return
	}
	if len(s.res.Findings) >= s.lim.MaxFindings {
		s.res.Dropped++
		return
	}
	s.index[k] = len(s.res.Findings)
	sum := sha256.Sum256([]byte(m.text))
	f := Finding{
		Rule: m.r.ID, Pack: m.r.Pack, Severity: m.r.Severity, Action: act,
		Path: tok.pointer(), Key: tok.key, Layer: m.layer, Count: 1,
		Excerpt: excerpt(m.text, s.lim.ExcerptBytes, m.r.sensitive),
	}
	if m.text != "" {
		f.MatchSHA256 = hex.EncodeToString(sum[:])
	}
	s.res.Findings = append(s.res.Findings, f)
}

// excerpt bounds text to max bytes on a rune boundary and escapes what
// would not print; a secret keeps only its first four characters.
func excerpt(text string, limit int, secret bool) string {
	if secret {
		n, i := 0, 0
		for i < len(text) && n < 4 {
			_, size := utf8.DecodeRuneInString(text[i:])
			i += size
			n++
		}
		q := strconv.Quote(text[:i])
		return q[1:len(q)-1] + "…"
	}
	cut := false
	if len(text) > limit {
		end := limit
		for end > 0 && !utf8.RuneStart(text[end]) {
			end--
		}
		text, cut = text[:end], true
	}
	q := strconv.Quote(text)
	q = q[1 : len(q)-1]
	if cut {
		q += "…"
	}
	return q
}

// finish sets the verdict, the redacted message and the digests.
func (s *scanner) finish(raw []byte) {
	r := s.res
	r.Truncated = s.truncated
	r.Verdict = verdictOf(s.strongest)
	if r.Verdict == Allow {
		return
	}
	r.OriginalSHA256 = digest(raw)
	if r.Verdict != Redacted {
		return
	}
	r.Redacted = redact(raw, s.edits)
	r.RedactedSHA256 = digest(r.Redacted)
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
