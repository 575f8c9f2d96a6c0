package guardrail_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/enforcer/guardrail"
)

// The labelled corpus lives with the cross-package suites; each line is
// {"id", "text", "label": "malicious"|"benign", "family", "lang", "encoding"}.
const (
	corpusFile  = "../../test/guardrails/corpus/corpus.jsonl"
	holdoutFile = "../../test/guardrails/corpus/holdout.jsonl"
)

type sample struct {
	ID       string `json:"id"`
	Text     string `json:"text"`
	Label    string `json:"label"`
	Family   string `json:"family"`
	Lang     string `json:"lang"`
	Encoding string `json:"encoding"`
}

func loadCorpus(t testing.TB, file string) []sample {
	t.Helper()
	f, err := os.Open(filepath.FromSlash(file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []sample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wrap puts a corpus text where an agent would: in turn a v0.3 text
// part, a v1.0 text part, a string inside a data part, a task artifact,
// a history message, message metadata, and a text file's bytes.
func wrap(i int, text string) (json.RawMessage, guardrail.Direction) {
	q, _ := json.Marshal(text)
	s := string(q)
	switch i % 7 {
	case 0:
		return json.RawMessage(`{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":` + s + `}]}`), guardrail.Inbound
	case 1:
		return json.RawMessage(`{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"Please handle this:"},{"text":` + s + `}]}`), guardrail.Inbound
	case 2:
		return json.RawMessage(`{"kind":"message","messageId":"m1","role":"agent","parts":[{"kind":"data","data":{"ticket":{"id":7,"notes":[` + s + `]}}}]}`), guardrail.Outbound
	case 3:
		return json.RawMessage(`{"kind":"task","id":"t1","contextId":"c1","status":{"state":"completed"},"artifacts":[{"artifactId":"a1","parts":[{"kind":"text","text":` + s + `}]}]}`), guardrail.Outbound
	case 4:
		return json.RawMessage(`{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"},"history":[{"messageId":"h1","role":"ROLE_AGENT","parts":[{"text":` + s + `}]}]}`), guardrail.Outbound
	case 5:
		return json.RawMessage(`{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"see metadata"}],"metadata":{"source":{"comment":` + s + `}}}`), guardrail.Inbound
	default:
		b64, _ := json.Marshal([]byte(text))
		return json.RawMessage(`{"messageId":"m1","role":"ROLE_USER","parts":[{"raw":` + string(b64) + `,"filename":"note.txt","mediaType":"text/plain"}]}`), guardrail.Inbound
	}
}

type tally struct{ n, hit int }

func (t tally) rate() float64 {
	if t.n == 0 {
		return 0
	}
	return float64(t.hit) / float64(t.n)
}

type quality struct {
	detected    tally             // malicious with any finding
	falsePos    tally             // benign with any finding
	byFamily    map[string]*tally // malicious of a family found by any pack
	byOwnPack   map[string]*tally // malicious of a family found by that family's pack
	fpByPack    map[string]*tally // benign with a finding of the pack
	missed, fps []string
}

func measure(t testing.TB, e *guardrail.Engine, corpus []sample) *quality {
	q := &quality{byFamily: map[string]*tally{}, byOwnPack: map[string]*tally{}, fpByPack: map[string]*tally{}}
	packs := []string{guardrail.PackInstructionOverride, guardrail.PackRoleSpoofing, guardrail.PackExfiltration,
		guardrail.PackHiddenInstructions, guardrail.PackToolSmuggling}
	for _, p := range packs {
		q.fpByPack[p] = &tally{}
	}
	for i, s := range corpus {
		msg, dir := wrap(i, s.Text)
		res := e.Scan(guardrail.Request{Direction: dir, From: "peer", To: "research", Message: msg})
		if res.Malformed || res.Truncated {
			t.Fatalf("%s: malformed=%v truncated=%v", s.ID, res.Malformed, res.Truncated)
		}
		found := map[string]bool{}
		for _, f := range res.Findings {
			found[f.Pack] = true
		}
		switch s.Label {
		case "malicious":
			q.detected.n++
			for _, m := range []map[string]*tally{q.byFamily, q.byOwnPack} {
				if m[s.Family] == nil {
					m[s.Family] = &tally{}
				}
				m[s.Family].n++
			}
			if len(res.Findings) > 0 {
				q.detected.hit++
				q.byFamily[s.Family].hit++
			} else {
				q.missed = append(q.missed, fmt.Sprintf("%s [%s/%s/%s] %.80q", s.ID, s.Family, s.Lang, s.Encoding, s.Text))
			}
			if found[s.Family] {
				q.byOwnPack[s.Family].hit++
			}
		case "benign":
			q.falsePos.n++
			for _, p := range packs {
				q.fpByPack[p].n++
				if found[p] {
					q.fpByPack[p].hit++
				}
			}
			if len(res.Findings) > 0 {
				q.falsePos.hit++
				q.fps = append(q.fps, fmt.Sprintf("%s %v %.80q", s.ID, res.RuleIDs(), s.Text))
			}
		default:
			t.Fatalf("%s: label %q", s.ID, s.Label)
		}
	}
	return q
}

func (q *quality) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "overall: detection %.3f (%d/%d), false positives %.3f (%d/%d)\n",
		q.detected.rate(), q.detected.hit, q.detected.n, q.falsePos.rate(), q.falsePos.hit, q.falsePos.n)
	fmt.Fprintf(&b, "| pack | injections | detected (any pack) | detected (by this pack) | false positives |\n|---|---|---|---|---|\n")
	var fams []string
	for f := range q.byFamily {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	for _, f := range fams {
		fp := q.fpByPack[f]
		fmt.Fprintf(&b, "| %s | %d | %.3f | %.3f | %.3f (%d/%d) |\n", f, q.byFamily[f].n, q.byFamily[f].rate(),
			q.byOwnPack[f].rate(), fp.rate(), fp.hit, fp.n)
	}
	for _, m := range q.missed {
		fmt.Fprintf(&b, "missed: %s\n", m)
	}
	for _, f := range q.fps {
		fmt.Fprintf(&b, "false positive: %s\n", f)
	}
	return b.String()
}

// Floors and ceilings recorded from the measured rates (docs/guardrails.md:
// corpus.jsonl and holdout.jsonl together, 255 injections, 223 benign
// messages: detection 1.000 in every pack, one false positive). Raise them
// when the rules get better; never lower them to let a change pass.
const (
	minDetection         = 0.98 // overall, any pack
	minFamilyDetection   = 0.95 // per family, by its own pack
	maxFalsePositives    = 0.01 // overall
	maxPackFalsePositive = 0.01 // per pack
)

// TestCorpusQuality measures the shipped packs on the labelled corpus and
// fails when a rate regresses past the recorded thresholds.
func TestCorpusQuality(t *testing.T) {
	e, err := guardrail.New(guardrail.Config{})
	if err != nil {
		t.Fatal(err)
	}
	corpus, holdout := loadCorpus(t, corpusFile), loadCorpus(t, holdoutFile)
	if len(corpus)+len(holdout) < 300 {
		t.Fatalf("corpus has %d messages, want at least 300", len(corpus)+len(holdout))
	}
	t.Logf("corpus.jsonl:\n%s", measure(t, e, corpus).report())
	t.Logf("holdout.jsonl:\n%s", measure(t, e, holdout).report())
	q := measure(t, e, append(corpus, holdout...))
	t.Logf("both:\n%s", q.report())
	if r := q.detected.rate(); r < minDetection {
		t.Errorf("detection %.3f < %.3f", r, minDetection)
	}
	if r := q.falsePos.rate(); r > maxFalsePositives {
		t.Errorf("false positives %.3f > %.3f", r, maxFalsePositives)
	}
	for fam, tl := range q.byOwnPack {
		if r := tl.rate(); r < minFamilyDetection {
			t.Errorf("%s: detection by its pack %.3f < %.3f", fam, r, minFamilyDetection)
		}
	}
	for pack, tl := range q.fpByPack {
		if r := tl.rate(); r > maxPackFalsePositive {
			t.Errorf("%s: false positives %.3f > %.3f", pack, r, maxPackFalsePositive)
		}
	}
}
