package guardrail

import (
	"slices"
	"strings"

	"github.com/tollgate/tollgate/enforcer/guardrail/internal/decode"
)

// keywords is the prefilter: every keyword of every pattern, plus the
// rot13 form of the words injections are made of, matched all at once by
// an Aho-Corasick automaton over bytes.
type keywords struct {
	ids   map[string]int32
	words []string
	// rot13[i] is set when keyword i is the rot13 form of another one,
	// or says "rot13".
	rot13 []bool
	// pats[i] are the patterns that have keyword i in a group.
	pats [][]*pattern
	// groupsOf[i] are the keyword groups keyword i belongs to.
	groupsOf [][]int32
	ngroups  int

	// ascii holds the keywords that are all ASCII, wide those with other
	// bytes: a text without such bytes only needs the smaller automaton.
	ascii, wide automaton
}

func newKeywords() *keywords {
	k := &keywords{ids: map[string]int32{}}
	for _, hint := range []string{"rot13", "rot-13", "rot 13"} {
		k.intern(hint, true)
	}
	for _, w := range strings.Fields(rot13Words) {
		k.intern(decode.DecodeRot13(w), true)
	}
	return k
}

// rot13Words are the words injections are made of; two of them in rot13
// make the scanner decode a text as rot13. (Words of six letters or more:
// the rot13 of shorter ones turns up in ordinary text.)
const rot13Words = `ignore ignoring disregard previous instructions instruction system prompt
forget reveal password passwords secret override assistant developer unrestricted restrictions
credentials guidelines ignoriere vorherigen anweisungen instrucciones anteriores ignora oublie
consignes esqueca approve transfer forward conversation history contents filters jailbreak
unfiltered`

func (k *keywords) add(w string) int32 {
	return k.intern(w, false)
}

func (k *keywords) intern(w string, rot bool) int32 {
	if id, ok := k.ids[w]; ok {
		return id
	}
	id := int32(len(k.words))
	k.ids[w] = id
	k.words = append(k.words, w)
	k.rot13 = append(k.rot13, rot)
	k.pats = append(k.pats, nil)
	k.groupsOf = append(k.groupsOf, nil)
	return id
}

func (k *keywords) build() {
	var ascii, wide []string
	var asciiIDs, wideIDs []int32
	for id, w := range k.words {
		if isASCII(w) {
			ascii, asciiIDs = append(ascii, w), append(asciiIDs, int32(id))
		} else {
			wide, wideIDs = append(wide, w), append(wideIDs, int32(id))
		}
	}
	k.ascii = buildAutomaton(ascii, asciiIDs)
	k.wide = buildAutomaton(wide, wideIDs)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// scan appends every keyword occurrence in text to hits, in order of
// their end, up to max; it reports false when it stopped at max.
func (k *keywords) scan(text string, hits []hit, max int) ([]hit, bool) {
	hits, complete := k.ascii.scan(text, hits, max)
	if !complete || isASCII(text) {
		return hits, complete
	}
	n := len(hits)
	hits, complete = k.wide.scan(text, hits, max)
	if n > 0 && n < len(hits) {
		slices.SortStableFunc(hits, func(a, b hit) int { return int(a.end - b.end) })
	}
	return hits, complete
}

// automaton is an Aho-Corasick automaton compiled to a dense DFA over
// byte classes: one table lookup per input byte.
type automaton struct {
	class  [256]uint8
	nclass int
	delta  []uint16  // state*nclass + class -> state
	out    [][]int32 // keyword ids ending at each state
}

// buildAutomaton builds the automaton of words; ids are what a hit of
// each word reports.
func buildAutomaton(words []string, ids []int32) automaton {
	var a automaton
	// Byte classes: every byte used by a keyword gets its own class,
	// all others share class 0.
	next := uint8(1)
	for _, w := range words {
		for i := 0; i < len(w); i++ {
			if a.class[w[i]] == 0 {
				a.class[w[i]] = next
				next++
			}
		}
	}
	a.nclass = int(next)
	// Trie.
	type node struct {
		next map[uint8]int32
		fail int32
		out  []int32
	}
	nodes := []node{{next: map[uint8]int32{}}}
	for id, w := range words {
		s := int32(0)
		for i := 0; i < len(w); i++ {
			c := a.class[w[i]]
			n, ok := nodes[s].next[c]
			if !ok {
				n = int32(len(nodes))
				nodes = append(nodes, node{next: map[uint8]int32{}})
				nodes[s].next[c] = n
			}
			s = n
		}
		nodes[s].out = append(nodes[s].out, ids[id])
	}
	// Breadth-first: failure links, merged outputs, dense transitions.
	if len(nodes) > 1<<16 {
		panic("guardrail: keyword automaton over 65536 states")
	}
	a.delta = make([]uint16, len(nodes)*a.nclass)
	a.out = make([][]int32, len(nodes))
	queue := make([]int32, 0, len(nodes))
	for c := 0; c < a.nclass; c++ {
		if n, ok := nodes[0].next[uint8(c)]; ok {
			a.delta[c] = uint16(n)
			queue = append(queue, n)
		}
	}
	a.out[0] = nodes[0].out
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := nodes[s].fail
		a.out[s] = append(append([]int32(nil), nodes[s].out...), a.out[f]...)
		for c := 0; c < a.nclass; c++ {
			if n, ok := nodes[s].next[uint8(c)]; ok {
				nodes[n].fail = int32(a.delta[int(f)*a.nclass+c])
				a.delta[int(s)*a.nclass+c] = uint16(n)
				queue = append(queue, n)
			} else {
				a.delta[int(s)*a.nclass+c] = a.delta[int(f)*a.nclass+c]
			}
		}
	}
	return a
}

// hit is a keyword found in a text, by the offset just past its end.
type hit struct {
	kw  int32
	end int32
}

// scan appends every keyword occurrence in text to hits, up to max.
// It reports false when it stopped at max.
func (a *automaton) scan(text string, hits []hit, max int) ([]hit, bool) {
	s := 0
	n := a.nclass
	for i := 0; i < len(text); i++ {
		s = int(a.delta[s*n+int(a.class[text[i]])])
		if out := a.out[s]; len(out) > 0 {
			for _, kw := range out {
				if len(hits) >= max {
					return hits, false
				}
				hits = append(hits, hit{kw: kw, end: int32(i + 1)})
			}
		}
	}
	return hits, true
}
