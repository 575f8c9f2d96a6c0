package runtree_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
	"github.com/tollgate/tollgate/schemas"
)

func rechain(t testing.TB, recs []ledger.Record) []ledger.Record {
	t.Helper()
	out, err := runtreetest.Rechain(recs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// editData rewrites the data of event i (0-based) with edit.
func editData[T any](t testing.TB, recs []ledger.Record, i int, edit func(*T)) []ledger.Record {
	t.Helper()
	raw, err := runtreetest.EditData(recs[i].Raw, edit)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(recs)
	out[i] = ledger.Record{Raw: raw}
	return out
}

func replaceIn(t testing.TB, recs []ledger.Record, i int, old, new string) []ledger.Record {
	t.Helper()
	if !bytes.Contains(recs[i].Raw, []byte(old)) {
		t.Fatalf("event %d has no %q", i+1, old)
	}
	out := slices.Clone(recs)
	out[i] = ledger.Record{Raw: bytes.Replace(recs[i].Raw, []byte(old), []byte(new), 1)}
	return out
}

// forged re-signs the invoke recorded at event i with another identity's
// key, keeping its sender, and rewrites the chain.
func forged(t testing.TB, recs []ledger.Record, i int, signer string, text string) []ledger.Record {
	t.Helper()
	raw, err := runtreetest.ForgeInvoke(recs[i].Raw, text, runtreetest.Key(signer).Sign)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(recs)
	out[i] = ledger.Record{Raw: raw}
	return rechain(t, out)
}

type tamper struct {
	name string
	recs func(t testing.TB) []ledger.Record
	keys bool
	// the first broken link expected
	seq     uint64
	typ     schemas.EventType
	hop     string
	kind    string
	problem string
}

func tampers() []tamper {
	return []tamper{
		{name: "edit a field", recs: func(t testing.TB) []ledger.Record {
			return replaceIn(t, incident(t), 5, `"depth":1`, `"depth":0`) // hop.allowed of writer
		}, seq: 6, typ: schemas.EventHopAllowed, hop: "h004", kind: "chain", problem: "content does not match its hash"},
		{name: "drop an event", recs: func(t testing.TB) []ledger.Record {
			recs := incident(t)
			return slices.Delete(recs, 3, 4) // the denial
		}, seq: 4, typ: schemas.EventHopCompleted, hop: "h002", kind: "chain", problem: "has seq 5 where 4 belongs"},
		{name: "drop the first event", recs: func(t testing.TB) []ledger.Record {
			return incident(t)[1:]
		}, seq: 1, typ: schemas.EventHopAllowed, hop: "h001", kind: "chain", problem: "has seq 2 where 1 belongs"},
		{name: "swap two events", recs: func(t testing.TB) []ledger.Record {
			recs := incident(t)
			recs[5], recs[6] = recs[6], recs[5]
			return recs
		}, seq: 6, typ: schemas.EventHopCompleted, hop: "h004", kind: "chain", problem: "has seq 7 where 6 belongs"},
		{name: "change a payload", recs: func(t testing.TB) []ledger.Record {
			return replaceIn(t, incident(t), 2, "Find sources: governance", "Find sources: anything at all")
		}, seq: 3, typ: schemas.EventHopAllowed, hop: "h002", kind: "chain", problem: "content does not match its hash"},
		{name: "change a payload and fix its hash", recs: func(t testing.TB) []ledger.Record {
			recs := editData(t, incident(t), 4, func(d *schemas.HopCompleted) { d.Usage.CostUSD = 0.001 })
			return recs
		}, seq: 6, typ: schemas.EventHopAllowed, hop: "h004", kind: "chain", problem: "prev_hash"},
		{name: "change a payload and rewrite the chain", keys: true, recs: func(t testing.TB) []ledger.Record {
			return rechain(t, replaceIn(t, incident(t), 2, "Find sources: governance", "Find sources: anything at all"))
		}, seq: 3, typ: schemas.EventHopAllowed, hop: "h002", kind: "signature", problem: `envelope from "orchestrator": bad signature`},
		{name: "forge a signature", keys: true, recs: func(t testing.TB) []ledger.Record {
			return forged(t, incident(t), 5, "critic", "Draft something else")
		}, seq: 6, typ: schemas.EventHopAllowed, hop: "h004", kind: "signature", problem: `envelope from "orchestrator": bad signature`},
		{name: "pass another sender's envelope off", keys: true, recs: func(t testing.TB) []ledger.Record {
			return rechain(t, editData(t, incident(t), 5, func(d *schemas.HopDecision) { d.From = "critic" }))
		}, seq: 6, typ: schemas.EventHopAllowed, hop: "h004", kind: "signature", problem: `envelope is from "orchestrator" but the event records "critic"`},
		{name: "blank an admitted envelope and rewrite the chain", keys: true, recs: func(t testing.TB) []ledger.Record {
			return rechain(t, editData(t, incident(t), 5, func(d *schemas.HopDecision) { d.Envelope = nil }))
		}, seq: 6, typ: schemas.EventHopAllowed, hop: "h004", kind: "signature", problem: "envelope is missing"},
		{name: "a line that is not JSON", recs: func(t testing.TB) []ledger.Record {
			recs := incident(t)
			recs[7] = ledger.Record{Raw: []byte(`{"v":1,"run_id":"run-incident","seq":8,`)}
			return recs
		}, seq: 8, kind: "chain", problem: "malformed"},
		{name: "an event of another run", recs: func(t testing.TB) []ledger.Record {
			recs := incident(t)
			recs[1] = loop(t)[1]
			return recs
		}, seq: 2, typ: schemas.EventHopAllowed, hop: "h001", kind: "chain", problem: `belongs to run "run-loop"`},
		{name: "the hash member moved", recs: func(t testing.TB) []ledger.Record {
			recs := incident(t)
			raw := recs[2].Raw
			_, hash, _ := schemas.SplitLastMember(raw, "hash")
			recs[2] = ledger.Record{Raw: []byte(`{"hash":"` + hash + `",` + string(bytes.TrimPrefix(bytes.Replace(raw, []byte(`,"hash":"`+hash+`"`), nil, 1), []byte("{"))))}
			return recs
		}, seq: 3, typ: schemas.EventHopAllowed, hop: "h002", kind: "chain", problem: "no hash as the event's last member"},
	}
}

// TestTamperDetected: every alteration of a copy is found, and the first
// broken link names the right event.
func TestTamperDetected(t *testing.T) {
	for _, tc := range tampers() {
		t.Run(tc.name, func(t *testing.T) {
			var keys runtree.Keys
			if tc.keys {
				keys = demoKeys(t)
			}
			v := runtree.Verify("run-incident", tc.recs(t), keys)
			b := v.Broken
			if b == nil {
				t.Fatalf("not detected: %s", v.Summary())
			}
			if b.Seq != tc.seq || b.Type != tc.typ || b.HopID != tc.hop || b.Kind != tc.kind || !strings.Contains(b.Problem, tc.problem) {
				t.Fatalf("broken link %+v, want event %d (%s %s) %s: %q", b, tc.seq, tc.typ, tc.hop, tc.kind, tc.problem)
			}
			if v.Valid != int(tc.seq)-1 || v.OK() || !errors.Is(v.Err(), ledger.ErrTampered) {
				t.Fatalf("valid %d, ok %v, err %v", v.Valid, v.OK(), v.Err())
			}
			// The part before the broken link still makes a tree.
			if _, err := v.Tree(); err != nil {
				t.Fatalf("tree of the valid part: %v", err)
			}
		})
	}
}

// TestVerifyAgreesWithLedger: on every tampered copy, the parallel
// verifier names the same first broken link, in the same words, as the
// ledger's own Verify (chain) and VerifySignatures (signatures, complete
// keys).
func TestVerifyAgreesWithLedger(t *testing.T) {
	keys := demoKeys(t)
	keyFunc := func(id string) ed25519.PublicKey {
		if k := keys[id]; len(k) > 0 {
			return k[0]
		}
		return nil
	}
	cases := append(tampers(), tamper{name: "intact", recs: incident}, tamper{name: "intact loop", recs: loop})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := tc.recs(t)
			run := "run-incident"
			if tc.name == "intact loop" {
				run = "run-loop"
			}
			ours := runtree.Verify(run, recs, nil).Err()
			theirs := ledger.Verify(run, recs)
			if errString(ours) != errString(theirs) {
				t.Fatalf("chain: runtree says %v, ledger says %v", ours, theirs)
			}
			if theirs != nil || tc.kind == "signature" && strings.Contains(tc.problem, "records") {
				return // the ledger has no sender check
			}
			ours = runtree.Verify(run, recs, keys).Err()
			theirs = ledger.VerifySignatures(decoded(t, recs), keyFunc)
			if errString(ours) != errString(theirs) {
				t.Fatalf("signatures: runtree says %v, ledger says %v", ours, theirs)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestVerifyKeys(t *testing.T) {
	recs := incident(t)
	all := demoKeys(t)
	some := runtree.Keys{"tomas": all["tomas"], "orchestrator": all["orchestrator"]}
	_, stranger := runtreetest.Key("stranger"), mustPub(t, "stranger")
	rotated := runtree.Keys{}
	for id, k := range all {
		rotated[id] = append([]ed25519.PublicKey{stranger}, k...) // an old key first, the current one after
	}
	wrong := runtree.Keys{}
	for id := range all {
		wrong[id] = []ed25519.PublicKey{stranger}
	}
	for _, tc := range []struct {
		name      string
		keys      runtree.Keys
		sigs      string
		checked   int
		unchecked map[string]int
		ok        bool
	}{
		{"no keys", nil, runtree.SigNotChecked, 0, nil, true},
		{"every key", all, runtree.SigVerified, 8, nil, true},
		{"some keys", some, runtree.SigPartial, 5, map[string]int{"research": 1, "writer": 1, "critic": 1}, true},
		{"keys of nobody in the run", runtree.Keys{"someone": all["tomas"]}, runtree.SigNotChecked, 0,
			map[string]int{"tomas": 1, "orchestrator": 4, "research": 1, "writer": 1, "critic": 1}, true},
		{"rotated keys", rotated, runtree.SigVerified, 8, nil, true},
		{"wrong keys", wrong, runtree.SigFailed, 0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := runtree.Verify("run-incident", recs, tc.keys)
			if v.Signatures != tc.sigs || v.Checked != tc.checked || v.OK() != tc.ok || !mapsEqual(v.Unchecked, tc.unchecked) {
				t.Fatalf("signatures %s, checked %d, unchecked %v, ok %v: %s", v.Signatures, v.Checked, v.Unchecked, v.OK(), v.Summary())
			}
		})
	}
}

func mustPub(t testing.TB, id string) ed25519.PublicKey {
	t.Helper()
	k, err := broker.ParsePublicKey(runtreetest.PublicKey(id))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestExpectHead: a copy that lost its last events still chains; only the
// head it should end at tells.
func TestExpectHead(t *testing.T) {
	recs := incident(t)
	full := runtree.Verify("run-incident", recs, nil)
	head := full.HeadHash

	short := runtree.Verify("run-incident", recs[:9], nil)
	if !short.OK() {
		t.Fatalf("a truncated copy fails the chain: %v", short.Err())
	}
	short.ExpectHead(head)
	if short.OK() || short.Broken.Kind != "head" || short.Broken.Seq != 9 || !strings.Contains(short.Broken.Problem, "removed from its end") || short.Valid != 9 {
		t.Fatalf("truncated copy against the head: %+v (valid %d)", short.Broken, short.Valid)
	}

	long := runtree.Verify("run-incident", recs, nil)
	long.ExpectHead(short.HeadHash) // the head of event 9
	if long.OK() || long.Broken.Seq != 10 || long.Valid != 9 {
		t.Fatalf("a copy longer than its head: %+v (valid %d)", long.Broken, long.Valid)
	}
	full.ExpectHead(head)
	if !full.OK() {
		t.Fatalf("the right head: %v", full.Err())
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	recs := incident(t)
	var buf bytes.Buffer
	if err := runtree.WriteJSONL(&buf, recs); err != nil {
		t.Fatal(err)
	}
	// An editor's CRLF line ends and blank lines do not change the events.
	edited := "\n" + strings.ReplaceAll(buf.String(), "\n", "\r\n") + "\n\n"
	for name, in := range map[string]string{"as written": buf.String(), "edited": edited} {
		got, run, err := runtree.ReadJSONL(strings.NewReader(in))
		if err != nil || run != "run-incident" || len(got) != len(recs) {
			t.Fatalf("%s: %d records of %q, %v", name, len(got), run, err)
		}
		for i := range got {
			if !bytes.Equal(got[i].Raw, recs[i].Raw) {
				t.Fatalf("%s: line %d is not the stored event", name, i+1)
			}
		}
		if v := runtree.Verify(run, got, demoKeys(t)); !v.OK() || v.Signatures != runtree.SigVerified {
			t.Fatalf("%s: %s", name, v.Summary())
		}
	}
	if _, _, err := runtree.ReadJSONL(strings.NewReader(strings.Repeat("x", runtree.MaxLine+10))); err == nil {
		t.Fatal("a line over the limit was read")
	}
	if err := runtree.WriteJSONL(&buf, []ledger.Record{{Raw: []byte("{\n}")}}); err == nil {
		t.Fatal("an event with a newline was written as one line")
	}
}
