package guardrail

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/tollgate/tollgate/enforcer/guardrail/internal/decode"
	"github.com/tollgate/tollgate/enforcer/guardrail/internal/textnorm"
)

// The prefilter must never hide a match: wherever a pattern matches the
// normalised text of a corpus message (or its rot13), every keyword group
// the pattern was given has a keyword in that text, and the pattern run as
// the scanner runs it (anchored at its leads or line starts, or in
// windows) finds a match too.
func TestPrefilterIsSound(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := newScanner(e)
	var n textnorm.Normalizer
	checked := 0
	for _, file := range []string{"../../test/guardrails/corpus/corpus.jsonl", "../../test/guardrails/corpus/holdout.jsonl"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var row struct{ Text string }
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatal(err)
			}
			for _, text := range []string{row.Text, decode.DecodeRot13(row.Text)} {
				norm := n.Normalize(text).S
				stamp, _ := s.findKeywords(norm, 1<<20)
				for _, p := range e.patterns {
					if p.re.MatchString(norm) {
						checked++
						if !s.groupsFound(p, stamp) {
							t.Errorf("%s matches %q but its keywords %v are not all found", p.rule.ID, norm, p.groups)
						}
						s.patternLeft = 1 << 30
						if len(s.run(p, norm, true)) == 0 {
							t.Errorf("%s matches %q but not as the scanner runs it", p.rule.ID, norm)
						}
					}
				}
			}
		}
		f.Close()
	}
	if checked < 200 {
		t.Fatalf("only %d matches checked", checked)
	}
}

// Every pattern has keywords, and every keyword is in normalised form
// (New checks this too); a keyword no text can contain would disable its
// pattern silently.
func TestKeywordsNormalised(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var n textnorm.Normalizer
	for i, w := range e.kw.words {
		if got := n.Normalize(w).S; got != w {
			t.Errorf("keyword %d %q normalises to %q", i, w, got)
		}
	}
}
