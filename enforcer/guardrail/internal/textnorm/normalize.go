// Package textnorm turns a string into the form the guardrail rules match
// against: Unicode NFKC, invisible characters removed, look-alike letters
// folded to one script, and case folded. It keeps a map from every byte
// of the result back to the source, so that a match can be reported and
// redacted where it really is, and it counts what it removed (zero-width
// and bidi controls, homoglyph words, text smuggled in Unicode tag
// characters) as signals of hidden content.
package textnorm

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Text is a normalised string with its map back to the source.
type Text struct {
	// S is the normalised text: NFKC, without invisible characters, with
	// look-alike letters folded in mixed-script words, case folded.
	S string
	// start[i] and end[i] are the source span of what produced byte i of
	// S. Both are nil when S maps to the source byte for byte.
	start, end []int32

	// ZeroWidth counts zero-width characters found between two letters
	// (inside or between words), where they hide words from a matcher.
	// Those joining emoji or other scripts are not counted.
	ZeroWidth int
	// Bidi counts bidirectional embedding, override and isolate controls.
	Bidi int
	// Homoglyph counts words written with look-alike letters of another
	// script (Latin with Cyrillic or Greek), which were folded.
	Homoglyph int
	// Tags is ASCII text smuggled in Unicode tag characters (U+E0020 to
	// U+E007E), which renders as nothing; TagStart and TagEnd are the
	// source span of the first to the last such character. Tag characters
	// of an emoji flag sequence are not counted.
	Tags             string
	TagStart, TagEnd int

	// Marks locate the zero-width, bidi and homoglyph signals in the
	// source (at most maxMarks of them): the word a zero-width character
	// hides in, the text a bidi control reorders, the homoglyph word.
	Marks []Mark
}

// MarkKind says what a Mark locates.
type MarkKind uint8

// The kinds of marks.
const (
	MarkZeroWidth MarkKind = iota + 1
	MarkBidi
	MarkHomoglyph
)

// Mark is the source span of one signal.
type Mark struct {
	Kind       MarkKind
	Start, End int
}

const maxMarks = 32

func (t *Text) mark(k MarkKind, start, end int) {
	if len(t.Marks) < maxMarks && start < end {
		t.Marks = append(t.Marks, Mark{Kind: k, Start: start, End: end})
	}
}

// wordAround widens [start, end) of s to the letters on both sides.
func wordAround(s string, start, end int) (int, int) {
	for start > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:start])
		if !unicode.IsLetter(r) && !unicode.Is(unicode.Mn, r) && !isZeroWidth(r) {
			break
		}
		start -= size
	}
	for end < len(s) {
		r, size := utf8.DecodeRuneInString(s[end:])
		if !unicode.IsLetter(r) && !unicode.Is(unicode.Mn, r) && !isZeroWidth(r) {
			break
		}
		end += size
	}
	return start, end
}

// Span maps the normalised byte range [i, j) of S to its source range.
func (t *Text) Span(i, j int) (int, int) {
	if t.start == nil {
		return i, j
	}
	if i >= len(t.start) {
		i = len(t.start) - 1
	}
	if j > len(t.end) {
		j = len(t.end)
	}
	if i < 0 || j <= i {
		return 0, 0
	}
	return int(t.start[i]), int(t.end[j-1])
}

// Normalizer normalises strings. It keeps scratch space between calls, so
// it is not safe for concurrent use; the zero value is ready.
type Normalizer struct {
	runes   []srcRune
	tags    []byte
	fold    cases.Caser
	hasFold bool
}

type srcRune struct {
	r          rune
	start, end int32
}

// Normalize returns the normalised form of s.
func (n *Normalizer) Normalize(s string) Text {
	ascii, upper := true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if ascii {
		if !upper {
			return Text{S: s}
		}
		b := []byte(s)
		for i, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			}
		}
		return Text{S: string(b)}
	}
	return n.slow(s)
}

// Flag sequences (U+1F3F4 then tag characters ending with U+E007F) are
// the one legitimate use of tag characters.
const blackFlag = 0x1F3F4

func (n *Normalizer) slow(s string) Text {
	var t Text
	n.runes = n.runes[:0]
	n.tags = n.tags[:0]
	var (
		it          norm.Iter
		pendingZW   int  // zero-width characters since the last kept rune
		zwStart     int  // where the first of them starts in the source
		prevLetter  bool // the last kept rune is a Latin, Cyrillic or Greek letter
		inFlag      bool // inside an emoji flag's tag sequence
		latin, cg   int  // letters per script, for the dominant script
		tagStartSet bool
	)
	it.InitString(norm.NFKC, s)
	for !it.Done() {
		st := it.Pos()
		seg := it.Next()
		en := it.Pos()
		for len(seg) > 0 {
			r, size := utf8.DecodeRune(seg)
			seg = seg[size:]
			switch {
			case 0xE0000 <= r && r <= 0xE007F:
				if !inFlag && len(n.runes) > 0 && n.runes[len(n.runes)-1].r == blackFlag {
					inFlag = true
				}
				if inFlag {
					if r == 0xE007F {
						inFlag = false
					}
					continue
				}
				if 0xE0020 <= r && r <= 0xE007E {
					n.tags = append(n.tags, byte(r-0xE0000))
					if !tagStartSet {
						t.TagStart, tagStartSet = st, true
					}
					t.TagEnd = en
				}
				continue
			case isBidi(r):
				t.Bidi++
				if r != 0x202C && r != 0x2069 {
					// The text it reorders: up to the closing control
					// or the end of the line.
					end := len(s)
					if k := indexAny(s[en:], "\u202c\u2069\n"); k >= 0 {
						end = en + k
					}
					t.mark(MarkBidi, st, end)
				}
				continue
			case isZeroWidth(r):
				if pendingZW == 0 {
					zwStart = st
				}
				pendingZW++
				continue
			case isInvisible(r):
				continue
			}
			inFlag = false
			sc := scriptOf(r)
			letter := unicode.IsLetter(r) && sc != scriptOther
			if pendingZW > 0 && prevLetter && letter {
				t.ZeroWidth += pendingZW
				ws, we := wordAround(s, zwStart, st)
				if n := len(t.Marks); n > 0 && t.Marks[n-1].Kind == MarkZeroWidth && t.Marks[n-1].End >= ws {
					t.Marks[n-1].End = max(t.Marks[n-1].End, we)
				} else {
					t.mark(MarkZeroWidth, ws, we)
				}
			}
			pendingZW = 0
			prevLetter = letter
			switch sc {
			case scriptLatin:
				latin++
			case scriptCyrillic, scriptGreek:
				cg++
			}
			n.runes = append(n.runes, srcRune{r: r, start: int32(st), end: int32(en)})
		}
	}
	if len(n.tags) > 0 {
		t.Tags = string(n.tags)
	}
	t.Homoglyph = foldWords(n.runes, latin > 2*cg, &t)

	out := make([]byte, 0, len(s))
	t.start = make([]int32, 0, len(s))
	t.end = make([]int32, 0, len(s))
	for _, sr := range n.runes {
		before := len(out)
		out = n.appendFolded(out, sr.r)
		for range len(out) - before {
			t.start = append(t.start, sr.start)
			t.end = append(t.end, sr.end)
		}
	}
	t.S = string(out)
	return t
}

// appendFolded appends the case fold of r.
func (n *Normalizer) appendFolded(out []byte, r rune) []byte {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return append(out, byte(r))
	}
	if !unicode.IsUpper(r) && !unicode.IsTitle(r) && r != 'ß' && r != 'ς' && r != 'ſ' {
		return utf8.AppendRune(out, r)
	}
	if !n.hasFold {
		n.fold, n.hasFold = cases.Fold(), true
	}
	var src [utf8.UTFMax]byte
	var dst [utf8.UTFMax * 3]byte
	sn := utf8.EncodeRune(src[:], r)
	n.fold.Reset()
	nDst, _, err := n.fold.Transform(dst[:], src[:sn], true)
	if err != nil {
		return append(out, src[:sn]...)
	}
	return append(out, dst[:nDst]...)
}

// foldWords folds the look-alike letters of mixed-script words in place
// and returns how many words it changed. latinText says the text is mostly
// Latin, in which case a word written only in Latin look-alikes of another
// script is folded too.
func foldWords(rs []srcRune, latinText bool, t *Text) int {
	words := 0
	for i := 0; i < len(rs); {
		if !isWordRune(rs[i].r) {
			i++
			continue
		}
		j := i
		ascii := true
		for ; j < len(rs) && isWordRune(rs[j].r); j++ {
			ascii = ascii && rs[j].r < utf8.RuneSelf
		}
		if ascii {
			// Nothing to fold in a plain ASCII word.
			i = j
			continue
		}
		j = i
		var lat, cg, cgConf int
		for ; j < len(rs) && isWordRune(rs[j].r); j++ {
			r := rs[j].r
			if l, ok := latinLookalike(r); ok {
				rs[j].r = l
				r = l
			}
			switch scriptOf(r) {
			case scriptLatin:
				lat++
			case scriptCyrillic, scriptGreek:
				cg++
				if _, ok := toLatin(r); ok {
					cgConf++
				}
			}
		}
		word := rs[i:j]
		i = j
		folded := false
		switch {
		case lat > 0 && cgConf > 0 && lat >= cg:
			folded = foldWith(word, toLatin)
		case lat > 0 && cg > lat:
			folded = foldWith(word, toCyrillic)
		case lat == 0 && cg >= 2 && cg == cgConf && latinText:
			folded = foldWith(word, toLatin)
		}
		if folded {
			words++
			t.mark(MarkHomoglyph, int(word[0].start), int(word[len(word)-1].end))
		}
	}
	return words
}

func indexAny(s, chars string) int {
	for i, r := range s {
		for _, c := range chars {
			if r == c {
				return i
			}
		}
	}
	return -1
}

func foldWith(word []srcRune, table func(rune) (rune, bool)) bool {
	changed := false
	for k := range word {
		if m, ok := table(word[k].r); ok {
			word[k].r = m
			changed = true
		}
	}
	return changed
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r) || unicode.Is(unicode.Mn, r)
}

// isBidi reports the bidirectional embedding, override and isolate
// controls, which can reorder what a reader sees.
func isBidi(r rune) bool {
	return (0x202A <= r && r <= 0x202E) || (0x2066 <= r && r <= 0x2069)
}

// isZeroWidth reports characters that render as nothing and can split a
// word without a reader noticing.
func isZeroWidth(r rune) bool {
	switch r {
	case 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x180E, 0x2061, 0x2062, 0x2063, 0x2064,
		0x115F, 0x1160, 0x3164, 0xFFA0, 0x17B4, 0x17B5:
		return true
	}
	return false
}

// isInvisible reports the other characters that render as nothing and are
// dropped without counting: format characters (soft hyphen, direction
// marks), variation selectors and the combining grapheme joiner.
func isInvisible(r rune) bool {
	return unicode.Is(unicode.Cf, r) || (0xFE00 <= r && r <= 0xFE0F) ||
		(0xE0100 <= r && r <= 0xE01EF) || r == 0x034F || (0x180B <= r && r <= 0x180D)
}
