package schemas

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/bench/cputime"
)

// randomHopDecision fills every member of a hop decision, or leaves it
// zero, at random, with strings that need escaping now and then.
func randomHopDecision(rng *rand.Rand) *HopDecision {
	strs := []string{"", "a", "orchestrator", `q"uote`, `back\slash`, "tab\there", "nl\n", "<html>&amp;", "é ü 中", "\u2028\u2029", "bad\xffutf8", "\x00\x1f"}
	str := func() string { return strs[rng.IntN(len(strs))] }
	list := func() []string {
		if rng.IntN(3) == 0 {
			return nil
		}
		out := make([]string, rng.IntN(4))
		for i := range out {
			out[i] = str()
		}
		return out
	}
	maybe := func() bool { return rng.IntN(2) == 0 }
	d := &HopDecision{
		Kind: Kind(str()), ParentHopID: str(), From: str(), To: str(),
		FromType: PrincipalType(str()), FromTeam: str(), FromTags: list(), ToType: PrincipalType(str()), ToTeam: str(), ToTags: list(),
		Action: Action(str()), Depth: rng.IntN(40) - 5, Ancestry: list(), OnBehalfOf: str(), Reason: Reason(str()), Message: str(),
		PolicyIDs: list(), Cycle: maybe(), Size: rng.IntN(1 << 20), Digest: str(), TraceID: str(), SpanID: str(), ParentSpanID: str(),
		Tainted: maybe(), TaintSources: list(),
	}
	if maybe() {
		d.SubmitSeq = rng.Uint64()
	}
	if maybe() {
		d.Audit = []Finding{{Reason: Reason(str()), Message: str(), PolicyIDs: list()}}
	}
	if maybe() {
		d.Breach = &Breach{Limit: str(), Value: rng.Float64() * 100, Bound: float64(rng.IntN(50))}
	}
	if maybe() {
		d.Deadline = time.Date(2026, 11, 28, 23, 0, 0, rng.IntN(1e9), time.UTC).Add(time.Duration(rng.IntN(1e6)) * time.Second)
		if rng.IntN(4) == 0 {
			d.Deadline = d.Deadline.In(time.FixedZone("x", 3600*(rng.IntN(25)-12)))
		}
	}
	if maybe() {
		d.Estimate = &Usage{InputTokens: rng.Int64N(1000), OutputTokens: rng.Int64N(1000), CostUSD: rng.Float64()}
	}
	if maybe() {
		wire, _ := sampleEnvelope().Marshal()
		d.Envelope = wire
	}
	if maybe() {
		d.Raw = []byte(str() + str())
	}
	if maybe() {
		d.Guardrail = &Guardrail{Verdict: str(), Rules: list(), Findings: []GuardrailFinding{{Rule: str(), Action: str()}}, OriginalSHA256: str()}
	}
	if maybe() {
		d.Redacted = json.RawMessage(`{ "a" : [1, 2] , "b":"<x>" }`)
	}
	if maybe() {
		d.Approval = &Approval{}
	}
	return d
}

// TestHopDecisionMarshalDataMatchesEncode holds the hand-written encoder of
// hop decisions to Encode, byte for byte: the ledger's hashes are over it.
func TestHopDecisionMarshalDataMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		d := randomHopDecision(rng)
		if i == 0 {
			d = &HopDecision{}
		}
		want, err := Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.MarshalData()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("MarshalData:\n%s\nEncode:\n%s", got, want)
		}
	}
}

// BenchmarkHopDecisionData compares the encoder of an allowed hop's data
// with Encode (docs/benchmarks.md).
func BenchmarkHopDecisionData(b *testing.B) {
	wire, _ := sampleEnvelope().Marshal()
	d := &HopDecision{Kind: KindInvoke, ParentHopID: NewID(), From: "orchestrator", To: "research", FromType: TypeAgent, FromTeam: "core",
		FromTags: []string{"entry"}, ToType: TypeAgent, ToTeam: "core", Action: ActionInvoke, Depth: 1, Ancestry: []string{"tomas", "orchestrator"},
		OnBehalfOf: "tomas", PolicyIDs: []string{"all"}, Deadline: time.Now().UTC(), SubmitSeq: 42, Envelope: wire, Size: len(wire), Digest: Digest(wire)}
	b.Run("encode", func(b *testing.B) {
		cputime.Loop(b, func() {
			if _, err := Encode(d); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("marshal-data", func(b *testing.B) {
		cputime.Loop(b, func() {
			if _, err := d.MarshalData(); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// TestContextAppendJSONMatchesEncode holds the delivery context's encoder
// to Encode, byte for byte.
func TestContextAppendJSONMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		h := randomHopDecision(rng)
		c := Context{RunID: h.From, HopID: h.To, ParentHopID: h.ParentHopID, Depth: h.Depth, Ancestry: h.Ancestry,
			OnBehalfOf: h.OnBehalfOf, Deadline: h.Deadline, TraceParent: h.TraceID, Attempt: rng.IntN(3)}
		if i == 0 {
			c = Context{}
		}
		want, err := Encode(&c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.appendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("appendJSON:\n%s\nEncode:\n%s", got, want)
		}
	}
	_, err := (&Context{Deadline: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).appendJSON(nil)
	if _, want := Encode(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil || want == nil {
		t.Fatalf("a deadline past year 9999: %v, Encode says %v", err, want)
	}
}
