package guardrail

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tollgate/tollgate/enforcer/guardrail/internal/textnorm"
)

// Rule describes one rule of a shipped pack, as Engine.Rules lists them.
type Rule struct {
	// ID is stable: "pack/rule".
	ID string `json:"id"`
	// Pack is the pack the rule belongs to.
	Pack string `json:"pack"`
	// Description says what the rule finds.
	Description string `json:"description"`
	// Severity ranks the finding.
	Severity Severity `json:"severity"`
	// Default is the action when the configuration names none for the
	// rule, its pack or the agent: block for high and critical rules,
	// flag for the others, redact for secrets found in a message.
	Default Action `json:"default"`
}

// The packs.
const (
	PackInstructionOverride = "instruction-override"
	PackRoleSpoofing        = "role-spoofing"
	PackExfiltration        = "exfiltration"
	PackHiddenInstructions  = "hidden-instructions"
	PackToolSmuggling       = "tool-smuggling"
	// PackScanner holds the findings about the scan itself: a message too
	// large or too deep to scan whole, one that is not JSON.
	PackScanner = "scanner"
	// PackExternal holds the external checker's findings ("external/<its
	// rule>") and its failures ("external/unavailable").
	PackExternal = "external"
)

// Rule ids the engine reports without a pattern.
const (
	RuleZeroWidth          = PackHiddenInstructions + "/zero-width"
	RuleBidiControl        = PackHiddenInstructions + "/bidi-control"
	RuleHomoglyph          = PackHiddenInstructions + "/homoglyph"
	RuleUnicodeTags        = PackHiddenInstructions + "/unicode-tags"
	RuleEncodedInstruction = PackHiddenInstructions + "/encoded-instruction"
	RuleCommentInstruction = PackHiddenInstructions + "/comment-instruction"
	RuleStructuredCall     = PackToolSmuggling + "/structured-call"
	RuleTruncated          = PackScanner + "/truncated"
	RuleMalformed          = PackScanner + "/malformed"
	RuleInternalError      = PackScanner + "/internal-error"
	RuleExternalFailed     = PackExternal + "/unavailable"
)

// ruleDef is a rule as a pack file writes it.
type ruleDef struct {
	name string
	desc string
	sev  Severity
	// def overrides the default action derived from the severity.
	def Action
	// instruction: a match is an instruction to the reader, so finding it
	// inside an encoded layer or a comment is a hidden instruction.
	instruction bool
	// sensitive: the match is a secret; its excerpt is masked.
	sensitive bool
	// patterns are alternatives, in the pattern language of expand.
	patterns []string
	// veto discards a match that it also matches (placeholders, ...).
	veto string
}

// rule is a compiled rule.
type rule struct {
	Rule
	index       int
	instruction bool
	sensitive   bool
	pats        []*pattern
	veto        *regexp.Regexp
}

// pattern is one compiled alternative of a rule, with the keyword groups
// that every match contains: the prefilter runs the expression only when
// each group has a keyword in the text.
type pattern struct {
	id     int
	rule   *rule
	re     *regexp.Regexp
	groups [][]int32 // keyword ids
	// groupIDs number the groups across all patterns, for the scanner's
	// per-text record of the groups that have a keyword.
	groupIDs []int32
	// When every match starts with one of a few keywords (leads), the
	// pattern is also compiled anchored (^...) and run only from where a
	// lead was found, which is much cheaper than searching the text.
	anchored *regexp.Regexp
	leads    []int32
	// wordStart: the pattern starts with \b, so a lead only counts at the
	// start of a word.
	wordStart bool
	// lineStart: every match starts at the start of a line ((?:^|\n)...);
	// the anchored form is run from the line starts just before a
	// keyword of the first group.
	lineStart bool
}

func defaultAction(d ruleDef) Action {
	switch {
	case d.def != "":
		return d.def
	case d.sev == High || d.sev == Critical:
		return Block
	}
	return Flag
}

// Pattern language: the rules match normalised text (NFKC, case folded,
// look-alikes folded), so they are written in lower case. On top of RE2:
//
//	' ' (a space outside a class) one to six separators (sepClass):
//	    spaces, punctuation, markup, line breaks
//	'~' zero to six separators
//	'…' a lazy gap of up to 60 characters
//	'·' one literal space (for short phrases the prefilter should see
//	    whole: "si·tu·es·une·ia")
//
// Every pattern is compiled with (?s), so '.' crosses lines.
const (
	// sepClass is what separates words: ASCII that is not a letter or a
	// digit, Latin-1 punctuation, and the Unicode punctuation, arrow, box
	// and CJK punctuation blocks. (It is spelled out because a [^\pL\pN]
	// in every pattern makes compiling the packs ten times slower.)
	sepClass = `[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f\x{a0}-\x{bf}\x{d7}\x{f7}\x{2000}-\x{206f}\x{2190}-\x{23ff}\x{2500}-\x{27bf}\x{3000}-\x{303f}\x{fe30}-\x{fe4f}]`
	sepOne   = sepClass + `{1,6}`
	sepZero  = sepClass + `{0,6}`
	gap      = `.{0,60}?`
)

func expand(p string) string {
	var b strings.Builder
	inClass, escaped := false, false
	for _, r := range p {
		switch {
		case escaped:
			escaped = false
			b.WriteRune(r)
		case r == '\\':
			escaped = true
			b.WriteRune(r)
		case r == '[' && !inClass:
			inClass = true
			b.WriteRune(r)
		case r == ']' && inClass:
			inClass = false
			b.WriteRune(r)
		case r == ' ' && !inClass:
			b.WriteString(sepOne)
		case r == '~' && !inClass:
			b.WriteString(sepZero)
		case r == '…' && !inClass:
			b.WriteString(gap)
		case r == '·' && !inClass:
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// minKeyword is the shortest keyword worth prefiltering on, in bytes
// (two-byte punctuation such as "![" is allowed too, and "@", which
// stands for every e-mail address).
const minKeyword = 3

// requiredGroups returns keyword groups that every match of re contains:
// one group per mandatory part of the top-level concatenation that is a
// literal or an alternation of literals.
func requiredGroups(re *syntax.Regexp) [][]string {
	var out [][]string
	switch re.Op {
	case syntax.OpConcat:
		for i := 0; i < len(re.Sub); {
			if g := required(re.Sub[i]); usable(g) {
				out = append(out, g)
				i++
				continue
			}
			// A part too short on its own is joined with the parts
			// after it that match a few strings exactly: "gh", [ops],
			// "_" make "ghp_", "gho_", ...
			set, j := []string{""}, i
			for ; j < len(re.Sub); j++ {
				next, ok := exact(re.Sub[j])
				if !ok {
					break
				}
				p := product(set, next)
				if p == nil {
					break
				}
				set = p
				if usable(set) {
					j++
					break
				}
			}
			if j > i && usable(set) {
				out = append(out, set)
				i = j
				continue
			}
			i++
		}
	case syntax.OpCapture:
		return requiredGroups(re.Sub[0])
	default:
		if g := required(re); len(g) > 0 {
			out = append(out, g)
		}
	}
	return out
}

// required returns literals one of which every match of re contains, or
// nil if it cannot say.
func required(re *syntax.Regexp) []string {
	if set, ok := exact(re); ok && usable(set) && (len(set) <= 16 || re.Op != syntax.OpConcat) {
		return set
	}
	switch re.Op {
	case syntax.OpCapture:
		return required(re.Sub[0])
	case syntax.OpRepeat, syntax.OpPlus:
		if re.Op == syntax.OpRepeat && re.Min < 1 {
			return nil
		}
		return required(re.Sub[0])
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			g := required(sub)
			if len(g) == 0 {
				return nil
			}
			all = append(all, g...)
		}
		return all
	case syntax.OpConcat:
		// Any one mandatory part will do; take the most selective: the
		// one whose shortest literal is longest. Runs of parts that match
		// a small set of strings exactly are tried as one part.
		var best []string
		consider := func(g []string) {
			if !usable(g) {
				return
			}
			if best == nil || better(g, best) {
				best = g
			}
		}
		if p, ok := prefixes(re); ok {
			consider(p)
		}
		for i := range re.Sub {
			consider(required(re.Sub[i]))
			set := []string{""}
			for j := i; j < len(re.Sub); j++ {
				next, ok := exact(re.Sub[j])
				if !ok {
					break
				}
				set = product(set, next)
				if set == nil {
					break
				}
				consider(set)
			}
		}
		return best
	}
	return nil
}

// prefixes returns strings one of which every match of re starts with,
// when there are few: "p(?:ersonal data|ii)" gives "personal", "pii".
func prefixes(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral, syntax.OpCharClass:
		return exact(re)
	case syntax.OpCapture:
		return prefixes(re.Sub[0])
	case syntax.OpPlus:
		return prefixes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min < 1 {
			return nil, false
		}
		return prefixes(re.Sub[0])
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			p, ok := prefixes(sub)
			if !ok || len(out)+len(p) > maxExact {
				return nil, false
			}
			out = append(out, p...)
		}
		return out, true
	case syntax.OpConcat:
		return prefixSeq(re.Sub)
	}
	return nil, false
}

// prefixSeq is prefixes for a concatenation.
func prefixSeq(subs []*syntax.Regexp) ([]string, bool) {
	set := []string{""}
	for i, sub := range subs {
		switch sub.Op {
		case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			continue
		}
		if e, ok := exact(sub); ok {
			if p := product(set, e); p != nil {
				set = p
				continue
			}
			return set, usable(set)
		}
		optional := sub.Op == syntax.OpQuest || sub.Op == syntax.OpStar || (sub.Op == syntax.OpRepeat && sub.Min == 0)
		var next []string
		var ok bool
		if optional {
			// A match starts with the optional part's prefix, or, when
			// it is absent, with the rest's.
			a, okA := prefixes(sub.Sub[0])
			b, okB := prefixSeq(subs[i+1:])
			next, ok = append(a, b...), okA && okB && len(a)+len(b) <= maxExact
		} else {
			next, ok = prefixes(sub)
		}
		if ok {
			if q := product(set, next); q != nil {
				return q, true
			}
		}
		return set, usable(set)
	}
	return set, true
}

// leadsOf returns the keywords every match of a pattern starts with,
// when they are few and long enough to anchor on.
func leadsOf(re *syntax.Regexp) ([]string, bool) {
	p, ok := prefixes(re)
	if !ok || !usable(p) || len(p) > maxExact {
		return nil, false
	}
	return p, true
}

// startsAtLine reports a pattern that starts with (?:^|\n).
func startsAtLine(re *syntax.Regexp) bool {
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	if re.Op != syntax.OpConcat || len(re.Sub) == 0 {
		return false
	}
	first := re.Sub[0]
	if first.Op != syntax.OpAlternate || len(first.Sub) != 2 {
		return false
	}
	a, b := first.Sub[0], first.Sub[1]
	return (a.Op == syntax.OpBeginText || a.Op == syntax.OpBeginLine) && b.Op == syntax.OpLiteral && string(b.Rune) == "\n"
}

func startsWithWordBoundary(re *syntax.Regexp) bool {
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	return re.Op == syntax.OpConcat && len(re.Sub) > 0 && re.Sub[0].Op == syntax.OpWordBoundary
}

// maxExact bounds the strings exact expands a node to.
const maxExact = 64

// exact returns every string re matches, when that is a small finite set.
func exact(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= 8 {
					return nil, false
				}
				out = append(out, string(r))
			}
		}
		return out, len(out) > 0
	case syntax.OpCapture:
		return exact(re.Sub[0])
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpQuest:
		sub, ok := exact(re.Sub[0])
		if !ok || len(sub) >= maxExact {
			return nil, false
		}
		return append([]string{""}, sub...), true
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			g, ok := exact(sub)
			if !ok || len(out)+len(g) > maxExact {
				return nil, false
			}
			out = append(out, g...)
		}
		return out, true
	case syntax.OpConcat:
		set := []string{""}
		for _, sub := range re.Sub {
			g, ok := exact(sub)
			if !ok {
				return nil, false
			}
			if set = product(set, g); set == nil {
				return nil, false
			}
		}
		return set, true
	}
	return nil, false
}

func product(a, b []string) []string {
	if len(a)*len(b) > maxExact {
		return nil
	}
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

func shortest(g []string) int {
	if len(g) == 0 {
		return 0
	}
	n := len(g[0])
	for _, s := range g {
		n = min(n, len(s))
	}
	return n
}

// better prefers keywords of four bytes or more (three-byte ones are
// common words), then fewer keywords, then longer ones.
func better(a, b []string) bool {
	sa, sb := min(shortest(a), 4), min(shortest(b), 4)
	if sa != sb {
		return sa > sb
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return shortest(a) > shortest(b)
}

func usable(g []string) bool {
	if len(g) == 0 {
		return false
	}
	for _, k := range g {
		if len(k) < minKeyword && !(len(k) == 2 && punctuation(k)) && k != "@" {
			return false
		}
	}
	return true
}

// punctuation reports a keyword without letters, digits or spaces, which
// is rare enough in text to prefilter on at two bytes ("![", "<|").
func punctuation(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x80 || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// compileRules compiles the shipped packs. Every keyword must be in the
// normalised form the matcher sees.
func compileRules() ([]*rule, []*pattern, *keywords, error) {
	kw := newKeywords()
	var rules []*rule
	var pats []*pattern
	var errs []string
	norm := &textnorm.Normalizer{}
	for _, pk := range shippedPacks() {
		for _, d := range pk.rules {
			r := &rule{
				Rule: Rule{
					ID: pk.name + "/" + d.name, Pack: pk.name, Description: d.desc,
					Severity: d.sev, Default: defaultAction(d),
				},
				index:       len(rules),
				instruction: d.instruction,
				sensitive:   d.sensitive,
			}
			if !d.sev.valid() || !r.Default.valid() || d.desc == "" {
				errs = append(errs, fmt.Sprintf("%s: severity, default action or description missing", r.ID))
			}
			if d.veto != "" {
				v, err := regexp.Compile("(?s)" + expand(d.veto))
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: veto: %v", r.ID, err))
				}
				r.veto = v
			}
			for i, src := range d.patterns {
				expr := "(?s)" + expand(src)
				re, err := regexp.Compile(expr)
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: pattern %d: %v", r.ID, i, err))
					continue
				}
				parsed, err := syntax.Parse(expr, syntax.Perl)
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: pattern %d: %v", r.ID, i, err))
					continue
				}
				p := &pattern{id: len(pats), rule: r, re: re}
				pats = append(pats, p)
				for _, g := range requiredGroups(parsed) {
					var ids []int32
					for _, k := range g {
						if n := norm.Normalize(k); n.S != k && utf8.ValidString(k) {
							errs = append(errs, fmt.Sprintf("%s: pattern %d: keyword %q is not normalised (%q)", r.ID, i, k, n.S))
						}
						ids = append(ids, kw.add(k))
					}
					slices.Sort(ids)
					ids = slices.Compact(ids)
					p.groups = append(p.groups, ids)
					for _, id := range ids {
						if !slices.Contains(kw.pats[id], p) {
							kw.pats[id] = append(kw.pats[id], p)
						}
					}
				}
				if startsAtLine(parsed) {
					p.anchored = regexp.MustCompile("(?s)^(?:" + expand(src) + ")")
					p.lineStart = true
				} else if leads, ok := leadsOf(parsed); ok {
					p.anchored = regexp.MustCompile("(?s)^(?:" + expand(src) + ")")
					p.wordStart = startsWithWordBoundary(parsed)
					for _, k := range leads {
						p.leads = append(p.leads, kw.add(k))
					}
					slices.Sort(p.leads)
					p.leads = slices.Compact(p.leads)
					p.groups = append(p.groups, p.leads)
					for _, id := range p.leads {
						if !slices.Contains(kw.pats[id], p) {
							kw.pats[id] = append(kw.pats[id], p)
						}
					}
				}
				if len(p.groups) == 0 {
					errs = append(errs, fmt.Sprintf("%s: pattern %d has no keyword every match contains", r.ID, i))
				}
				r.pats = append(r.pats, p)
			}
			rules = append(rules, r)
		}
		for _, name := range pk.signals {
			rules = append(rules, &rule{Rule: name, index: len(rules), instruction: name.ID == RuleStructuredCall})
		}
	}
	if len(errs) > 0 {
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrRules, strings.Join(errs, "; "))
	}
	for _, p := range pats {
		for _, g := range p.groups {
			id := int32(kw.ngroups)
			kw.ngroups++
			p.groupIDs = append(p.groupIDs, id)
			for _, k := range g {
				kw.groupsOf[k] = append(kw.groupsOf[k], id)
			}
		}
	}
	kw.build()
	return rules, pats, kw, nil
}

// pack is a shipped rule pack.
type pack struct {
	name  string
	rules []ruleDef
	// signals are the pack's rules that the engine reports itself.
	signals []Rule
}

func signal(id, desc string, sev Severity, def Action) Rule {
	pk, _, _ := strings.Cut(id, "/")
	return Rule{ID: id, Pack: pk, Description: desc, Severity: sev, Default: def}
}

func shippedPacks() []pack {
	return []pack{
		{name: PackInstructionOverride, rules: instructionOverrideRules()},
		{name: PackRoleSpoofing, rules: roleSpoofingRules()},
		{name: PackExfiltration, rules: exfiltrationRules()},
		{name: PackHiddenInstructions, rules: hiddenInstructionRules(), signals: []Rule{
			signal(RuleZeroWidth, "zero-width characters inside or between words, which hide words from readers and filters", Medium, Flag),
			signal(RuleBidiControl, "bidirectional override, embedding or isolate controls, which reorder what a reader sees", Medium, Flag),
			signal(RuleHomoglyph, "words written with look-alike letters of another script (Cyrillic or Greek in Latin words)", Medium, Flag),
			signal(RuleUnicodeTags, "text smuggled in invisible Unicode tag characters", High, Block),
			signal(RuleEncodedInstruction, "an instruction found only after decoding base64, hex, rot13, URL or HTML-entity encoding, or letter spacing", High, Block),
			signal(RuleCommentInstruction, "an instruction inside an HTML or markdown comment, which a renderer hides", High, Block),
		}},
		{name: PackToolSmuggling, rules: toolSmugglingRules(), signals: []Rule{
			signal(RuleStructuredCall, `a structured tool call inside message data: an MCP "tools/call" request or a "function_call"/"tool_calls" member`, Medium, Flag),
		}},
		{name: PackScanner, signals: []Rule{
			signal(RuleTruncated, "the message exceeded a scan bound (size, text, depth, decoded bytes) and was not scanned whole", High, Block),
			signal(RuleMalformed, "the message is not valid JSON; it was scanned as plain text", High, Block),
			signal(RuleInternalError, "the scanner failed on this message", Critical, Block),
		}},
		{name: PackExternal, signals: []Rule{
			signal(RuleExternalFailed, "the external checker did not answer (timeout, busy, error, malformed answer); fail-open flags, fail-closed blocks", Medium, Flag),
		}},
	}
}
