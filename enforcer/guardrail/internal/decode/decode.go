// Package decode finds what a string hides from a reader or from a plain
// text matcher: base64, hex, URL-encoded and HTML-entity encoded runs,
// HTML and markdown comments, letter-spaced words, and (on request) rot13.
// Each find is a Layer: the decoded text and the source span it came from,
// so the guardrail can scan the decoded text and redact its source.
package decode

import (
	"encoding/base64"
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind names how a layer was hidden.
type Kind uint8

// The kinds of layers.
const (
	Base64 Kind = iota + 1
	Hex
	URL
	HTMLEntities
	HTMLComment
	MarkdownComment
	Spaced
	Rot13
	UnicodeTags
	FileBytes
)

func (k Kind) String() string {
	switch k {
	case Base64:
		return "base64"
	case Hex:
		return "hex"
	case URL:
		return "url-encoding"
	case HTMLEntities:
		return "html-entities"
	case HTMLComment:
		return "html-comment"
	case MarkdownComment:
		return "markdown-comment"
	case Spaced:
		return "spaced-letters"
	case Rot13:
		return "rot13"
	case UnicodeTags:
		return "unicode-tags"
	case FileBytes:
		return "file-bytes"
	}
	return "unknown"
}

// Comment reports the kinds that are comments: text a renderer hides.
func (k Kind) Comment() bool { return k == HTMLComment || k == MarkdownComment }

// Layer is text found inside a string.
type Layer struct {
	Kind Kind
	// Start and End are the source span the text came from.
	Start, End int
	// Text is the decoded text.
	Text string
	// start[i] and end[i] are the source span of byte i of Text, for the
	// decoders that keep a map; without one every byte maps to the whole
	// span.
	start, end []int32
}

// Span maps the range [i, j) of Text to its source range.
func (l *Layer) Span(i, j int) (int, int) {
	if l.start == nil || i < 0 || j > len(l.start) || j <= i {
		return l.Start, l.End
	}
	return int(l.start[i]), int(l.end[j-1])
}

// mapped builds text with a source span per byte.
type mapped struct {
	text       []byte
	start, end []int32
}

func (m *mapped) add(b []byte, start, end int) {
	m.text = append(m.text, b...)
	for range b {
		m.start = append(m.start, int32(start))
		m.end = append(m.end, int32(end))
	}
}

func (m *mapped) addByte(c byte, start, end int) {
	m.text = append(m.text, c)
	m.start = append(m.start, int32(start))
	m.end = append(m.end, int32(end))
}

func (m *mapped) layer(k Kind, start, end int) Layer {
	return Layer{Kind: k, Start: start, End: end, Text: string(m.text), start: m.start, end: m.end}
}

// Budget bounds the decoded bytes one message may produce.
type Budget struct {
	// Left is how many decoded bytes may still be produced.
	Left int
	// Exhausted is set once a layer was dropped for want of budget.
	Exhausted bool
}

func (b *Budget) take(n int) bool {
	if n > b.Left {
		b.Exhausted = true
		return false
	}
	b.Left -= n
	return true
}

// minEncoded is the shortest base64 or hex run worth decoding: shorter
// runs hold too little text to be an instruction and too often are
// identifiers.
const (
	minBase64 = 16
	minHex    = 16
	// probe is how much of a run is decoded to decide whether it is text.
	probe = 1024
)

// Find appends the layers hidden in s to dst.
func Find(dst []Layer, s string, b *Budget) []Layer {
	if len(s) < minShort {
		// Too short for any encoding worth decoding, or a comment.
		return dst
	}
	p := prescan(s)
	if p.longRun {
		dst = findRuns(dst, s, b)
	}
	if p.hexTokens >= 8 || p.backslashX {
		dst = findHexSeparated(dst, s, b)
	}
	if p.percent >= 2 {
		dst = findURL(dst, s, b)
	}
	if p.amp {
		dst = findEntities(dst, s, b)
	}
	if p.lt && strings.Contains(s, "<!--") {
		dst = findHTMLComments(dst, s, b)
	}
	if p.refColon {
		dst = findMarkdownComments(dst, s, b)
	}
	if p.singles >= 8 {
		dst = findSpaced(dst, s, b)
	}
	return dst
}

// profile is what one pass over a string says about which finders can
// find anything in it.
type profile struct {
	longRun    bool // a run of base64 characters of minBase64 or more
	hexTokens  int  // tokens of exactly two hex digits
	singles    int  // tokens of one character (any non-ASCII character may be a letter)
	percent    int
	backslashX bool
	amp, lt    bool
	refColon   bool // "]:"
}

func prescan(s string) profile {
	var p profile
	run, tokRunes, tokBytes := 0, 0, 0
	tokHex := true
	endToken := func() {
		switch {
		case tokRunes == 1:
			p.singles++
		case tokBytes == 2 && tokHex:
			p.hexTokens++
		}
		tokRunes, tokBytes, tokHex = 0, 0, true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		cl := class[c]
		if cl&cB64 != 0 {
			run++
			if run >= minBase64 {
				p.longRun = true
			}
		} else {
			run = 0
		}
		if c >= utf8.RuneSelf || cl&(cUp|cLow|cDig) != 0 {
			if c < utf8.RuneSelf || c >= 0xC0 {
				tokRunes++
			}
			tokBytes++
			tokHex = tokHex && cl&cHex != 0
			continue
		}
		if tokBytes > 0 {
			endToken()
		}
		switch c {
		case '%':
			p.percent++
		case '&':
			p.amp = true
		case '<':
			p.lt = true
		case '\\':
			if i+1 < len(s) && s[i+1] == 'x' {
				p.backslashX = true
			}
		case ']':
			if i+1 < len(s) && s[i+1] == ':' {
				p.refColon = true
			}
		}
	}
	if tokBytes > 0 {
		endToken()
	}
	return p
}

// minShort is the shortest string any finder looks at: two percent
// escapes, two entities, an empty comment.
const minShort = 6

const (
	cB64 = 1 << iota // base64 alphabet (standard or URL-safe)
	cHex             // hex digit
	cUp              // upper case letter
	cLow             // lower case letter
	cDig             // digit
)

// class is a read-only table of byte classes, built once.
var class = func() (t [256]uint8) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= cB64 | cUp
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cB64 | cLow
	}
	for c := '0'; c <= '9'; c++ {
		t[c] |= cB64 | cHex | cDig
	}
	for _, c := range "abcdefABCDEF" {
		t[c] |= cHex
	}
	for _, c := range "+/-_" {
		t[c] |= cB64
	}
	return t
}()

// findRuns finds base64 and hex runs.
func findRuns(dst []Layer, s string, b *Budget) []Layer {
	for i := 0; i < len(s); {
		if class[s[i]]&cB64 == 0 {
			i++
			continue
		}
		j := i
		var seen uint8
		for j < len(s) && class[s[j]]&cB64 != 0 {
			seen |= class[s[j]]
			j++
		}
		end := j
		for end < len(s) && end-j < 2 && s[end] == '=' {
			end++
		}
		start := i
		i = end
		if j-start < minBase64 {
			continue
		}
		run := s[start:j]
		if isHexRun(run) {
			if l, ok := decodeHex(run, start, end, b); ok {
				dst = append(dst, l)
				continue
			}
		}
		kinds := 0
		for _, c := range []uint8{cUp, cLow, cDig} {
			if seen&c != 0 {
				kinds++
			}
		}
		if kinds < 2 {
			continue
		}
		if l, ok := decodeBase64(run, start, end, b); ok {
			dst = append(dst, l)
		}
	}
	return dst
}

func isHexRun(run string) bool {
	r := strings.TrimPrefix(strings.TrimPrefix(run, "0x"), "0X")
	if len(r) < minHex || len(r)%2 != 0 {
		return false
	}
	for i := 0; i < len(r); i++ {
		if class[r[i]]&cHex == 0 {
			return false
		}
	}
	return true
}

func decodeHex(run string, start, end int, b *Budget) (Layer, bool) {
	r := strings.TrimPrefix(strings.TrimPrefix(run, "0x"), "0X")
	out := make([]byte, 0, min(len(r)/2, probe))
	for k := 0; k+1 < len(r); k += 2 {
		out = append(out, unhex(r[k])<<4|unhex(r[k+1]))
		if len(out) == probe && !Texty(out) {
			return Layer{}, false
		}
	}
	if !Texty(out) || !b.take(len(out)) {
		return Layer{}, false
	}
	return Layer{Kind: Hex, Start: start, End: end, Text: string(out)}, true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// findHexSeparated finds hex bytes written with separators: "\x69\x67",
// "69 67 6e", "0x69,0x67", "69:67:6e".
func findHexSeparated(dst []Layer, s string, b *Budget) []Layer {
	for i := 0; i < len(s); {
		if c := s[i]; class[c]&cHex == 0 && c != '\\' {
			i++
			continue
		}
		start, end, out := hexSeq(s, i)
		if end <= i {
			i++
			continue
		}
		i = end
		if len(out) < 8 || !Texty(out) || !b.take(len(out)) {
			continue
		}
		dst = append(dst, Layer{Kind: Hex, Start: start, End: end, Text: string(out)})
	}
	return dst
}

// hexSeq reads a sequence of separated hex bytes starting at i. It
// returns end <= i if there is none.
func hexSeq(s string, i int) (start, end int, out []byte) {
	start, end = i, i
	pos := i
	for len(out) < probe*4 {
		p := pos
		if len(out) > 0 {
			// One separator between bytes.
			switch {
			case p < len(s) && (s[p] == ' ' || s[p] == ':' || s[p] == ','):
				p++
				if p < len(s) && s[p] == ' ' {
					p++
				}
			case strings.HasPrefix(s[p:], `\x`):
			default:
				return start, end, out
			}
		}
		if strings.HasPrefix(s[p:], `\x`) || strings.HasPrefix(s[p:], "0x") {
			p += 2
		}
		if p+2 > len(s) || class[s[p]]&cHex == 0 || class[s[p+1]]&cHex == 0 {
			return start, end, out
		}
		if p+2 < len(s) && class[s[p+2]]&cB64 != 0 {
			// Three or more alphanumerics: a word, not a byte.
			return start, end, out
		}
		if len(out) == 0 && i > 0 && class[s[i-1]]&cB64 != 0 {
			return start, start, nil
		}
		out = append(out, unhex(s[p])<<4|unhex(s[p+1]))
		pos = p + 2
		end = pos
	}
	return start, end, out
}

func decodeBase64(run string, start, end int, b *Budget) (Layer, bool) {
	enc := base64.RawStdEncoding
	if strings.ContainsAny(run, "-_") {
		if strings.ContainsAny(run, "+/") {
			return Layer{}, false
		}
		enc = base64.RawURLEncoding
	}
	if len(run)%4 == 1 {
		run = run[:len(run)-1]
	}
	// Probe a prefix first, so that a large image is rejected cheaply.
	if len(run) > probe {
		head := run[:probe]
		out, err := enc.DecodeString(head)
		if err != nil || !Texty(out) {
			return Layer{}, false
		}
	}
	n := enc.DecodedLen(len(run))
	if n > b.Left {
		b.Exhausted = true
		return Layer{}, false
	}
	out, err := enc.DecodeString(run)
	if err != nil || !Texty(out) || !b.take(len(out)) {
		return Layer{}, false
	}
	return Layer{Kind: Base64, Start: start, End: end, Text: string(out)}, true
}

// Texty reports whether b looks like human text: valid UTF-8 (a rune cut
// at the end is allowed), almost all printable (invisible format
// characters included: hiding text in them is the point of some), and at
// least a fifth letters.
func Texty(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	var total, printable, letters int
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			if len(b) < utf8.UTFMax && !utf8.FullRune(b) {
				break
			}
			return false
		}
		b = b[size:]
		total++
		switch {
		case unicode.IsLetter(r) || (0xE0020 <= r && r <= 0xE007E):
			// Tag characters spell ASCII invisibly: they count as letters.
			letters++
			printable++
		case unicode.IsPrint(r) || r == '\n' || r == '\r' || r == '\t' || unicode.Is(unicode.Cf, r):
			printable++
		}
	}
	return printable*10 >= total*9 && letters*10 >= total*2
}

// findURL decodes the whole string when it has at least two percent
// escapes, keeping a map back to the source.
func findURL(dst []Layer, s string, b *Budget) []Layer {
	escapes := 0
	for i := 0; i+2 < len(s) && escapes < 2; i++ {
		if s[i] == '%' && class[s[i+1]]&cHex != 0 && class[s[i+2]]&cHex != 0 {
			escapes++
		}
	}
	if escapes < 2 || !b.take(len(s)) {
		return dst
	}
	plus := strings.ContainsAny(s, "?=&")
	var m mapped
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && i+2 < len(s) && class[s[i+1]]&cHex != 0 && class[s[i+2]]&cHex != 0:
			m.addByte(unhex(s[i+1])<<4|unhex(s[i+2]), i, i+3)
			i += 2
		case s[i] == '+' && plus:
			m.addByte(' ', i, i+1)
		default:
			m.addByte(s[i], i, i+1)
		}
	}
	if !utf8.Valid(m.text) {
		return dst
	}
	return append(dst, m.layer(URL, 0, len(s)))
}

// findEntities decodes the whole string when it has at least two HTML
// entities, keeping a map back to the source.
func findEntities(dst []Layer, s string, b *Budget) []Layer {
	n := 0
	for i := 0; i < len(s) && n < 2; {
		k := strings.IndexByte(s[i:], '&')
		if k < 0 {
			break
		}
		i += k
		if e := entityEnd(s, i); e > i {
			n++
			i = e
			continue
		}
		i++
	}
	if n < 2 || !b.take(len(s)) {
		return dst
	}
	var m mapped
	for i := 0; i < len(s); {
		if s[i] == '&' {
			if e := entityEnd(s, i); e > i {
				m.add([]byte(html.UnescapeString(s[i:e])), i, e)
				i = e
				continue
			}
		}
		m.addByte(s[i], i, i+1)
		i++
	}
	return append(dst, m.layer(HTMLEntities, 0, len(s)))
}

// entityEnd returns the end of the entity at s[i] == '&', or i if there
// is none.
func entityEnd(s string, i int) int {
	j := i + 1
	if j < len(s) && s[j] == '#' {
		j++
		hex := j < len(s) && (s[j] == 'x' || s[j] == 'X')
		if hex {
			j++
		}
		k := j
		for k < len(s) && k-j < 7 && (class[s[k]]&cDig != 0 || hex && class[s[k]]&cHex != 0) {
			k++
		}
		if k == j || k >= len(s) || s[k] != ';' {
			return i
		}
		return k + 1
	}
	k := j
	for k < len(s) && k-j < 32 && class[s[k]]&(cUp|cLow|cDig) != 0 {
		k++
	}
	if k-j < 2 || k >= len(s) || s[k] != ';' {
		return i
	}
	return k + 1
}

func findHTMLComments(dst []Layer, s string, b *Budget) []Layer {
	for i := 0; ; {
		k := strings.Index(s[i:], "<!--")
		if k < 0 {
			return dst
		}
		start := i + k
		body := start + 4
		end := len(s)
		bodyEnd := len(s)
		if e := strings.Index(s[body:], "-->"); e >= 0 {
			bodyEnd = body + e
			end = bodyEnd + 3
		}
		if strings.TrimSpace(s[body:bodyEnd]) != "" && b.take(bodyEnd-body) {
			var m mapped
			for k := body; k < bodyEnd; k++ {
				m.addByte(s[k], k, k+1)
			}
			dst = append(dst, m.layer(HTMLComment, start, end))
		}
		if end >= len(s) {
			return dst
		}
		i = end
	}
}

// findMarkdownComments finds link reference definitions used as comments,
// which markdown renders as nothing: [//]: # (text), [comment]: <> "text".
func findMarkdownComments(dst []Layer, s string, b *Budget) []Layer {
	for lineStart := 0; lineStart < len(s); {
		lineEnd := strings.IndexByte(s[lineStart:], '\n')
		if lineEnd < 0 {
			lineEnd = len(s)
		} else {
			lineEnd += lineStart
		}
		if text, ok := markdownComment(s[lineStart:lineEnd]); ok && b.take(len(text)) {
			dst = append(dst, Layer{Kind: MarkdownComment, Start: lineStart, End: lineEnd, Text: text})
		}
		lineStart = lineEnd + 1
	}
	return dst
}

func markdownComment(line string) (string, bool) {
	l := strings.TrimLeft(line, " ")
	if !strings.HasPrefix(l, "[") {
		return "", false
	}
	k := strings.Index(l, "]:")
	if k < 0 || strings.ContainsAny(l[1:k], "[]") {
		return "", false
	}
	rest := strings.TrimLeft(l[k+2:], " \t")
	switch {
	case strings.HasPrefix(rest, "#"):
		rest = rest[1:]
	case strings.HasPrefix(rest, "<>"):
		rest = rest[2:]
	default:
		return "", false
	}
	rest = strings.TrimSpace(rest)
	if len(rest) < 2 {
		return "", false
	}
	open, closing := rest[0], byte(0)
	switch open {
	case '(':
		closing = ')'
	case '"', '\'':
		closing = open
	default:
		return "", false
	}
	if rest[len(rest)-1] != closing {
		return "", false
	}
	text := strings.TrimSpace(rest[1 : len(rest)-1])
	return text, text != ""
}

// findSpaced finds words written one letter at a time ("i g n o r e  a l l"):
// at least eight single letters, each followed by one separator; two or
// more separators end a word.
func findSpaced(dst []Layer, s string, b *Budget) []Layer {
	var (
		m            mapped
		start, end   int
		letters      int
		prevWasSpace bool
	)
	flush := func() {
		if letters >= 8 && b.take(len(m.text)) {
			dst = append(dst, m.layer(Spaced, start, end))
		}
		m, letters = mapped{}, 0
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) {
			i += size
			continue
		}
		next, _ := utf8.DecodeRuneInString(s[i+size:])
		single := i+size >= len(s) || !unicode.IsLetter(next) && !unicode.IsDigit(next)
		before := i == 0
		if !before {
			p, _ := utf8.DecodeLastRuneInString(s[:i])
			before = !unicode.IsLetter(p) && !unicode.IsDigit(p)
		}
		if !single || !before {
			if letters > 0 {
				flush()
			}
			i += size
			for i < len(s) {
				r, size = utf8.DecodeRuneInString(s[i:])
				if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
					break
				}
				i += size
			}
			continue
		}
		// A single letter: its separators follow.
		if letters == 0 {
			start = i
		} else if prevWasSpace {
			m.addByte(' ', end, i)
		}
		m.add(utf8.AppendRune(nil, r), i, i+size)
		letters++
		i += size
		end = i
		seps := 0
		for i < len(s) {
			next, nsize := utf8.DecodeRuneInString(s[i:])
			if unicode.IsLetter(next) || unicode.IsDigit(next) {
				break
			}
			seps++
			i += nsize
		}
		prevWasSpace = seps >= 2
		if seps == 0 || seps > 4 {
			flush()
		}
	}
	if letters > 0 {
		flush()
	}
	return dst
}

// DecodeRot13 returns s with ASCII letters rotated by 13.
func DecodeRot13(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = 'a' + (c-'a'+13)%26
		case 'A' <= c && c <= 'Z':
			b[i] = 'A' + (c-'A'+13)%26
		}
	}
	return string(b)
}

// FileBytesLayer decodes the base64 content of a file part (A2A "raw" or
// "bytes") when it is text. It reports false for binary content.
func FileBytesLayer(s string, b *Budget) (Layer, bool) {
	t := strings.TrimRight(strings.TrimSpace(s), "=")
	if t == "" {
		return Layer{}, false
	}
	l, ok := decodeBase64(t, 0, len(s), b)
	if !ok {
		return Layer{}, false
	}
	l.Kind = FileBytes
	return l, true
}
