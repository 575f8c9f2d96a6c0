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
			var keys ledger.Keys
			if tc.keys {
				keys = demoKeys(t)
			}
			v := ledger.Verify("run-incident", tc.recs(t), keys)
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
			if _, err := runtree.FromVerified(v); err != nil {
				t.Fatalf("tree of the valid part: %v", err)
			}
		})
	}
}

// TestVerifyDecodedAgreesWithRaw: records that carry their decoded event
// (as ledger.Read and Scan return them) get the very verdict, in the same
// words, as the raw bytes alone, with and without keys, on every tampered
// copy. A decoded event that is not the decoding of the stored bytes (an
// edit of the bytes after reading, or another event's decoding) must not
// be checked in their place.
func TestVerifyDecodedAgreesWithRaw(t *testing.T) {
	keys := demoKeys(t)
	original := decoded(t, incident(t))
	cases := append(tampers(), tamper{name: "intact", recs: incident}, tamper{name: "intact loop", recs: loop})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := tc.recs(t)
			run := "run-incident"
			if tc.name == "intact loop" {
				run = "run-loop"
			}
			fresh := make([]ledger.Record, len(recs)) // decoded from their bytes, where they decode
			stale := make([]ledger.Record, len(recs)) // carrying the untampered run's decoded events
			for i, r := range recs {
				fresh[i], stale[i] = r, r
				if ev, err := schemas.DecodeEvent(r.Raw); err == nil {
					fresh[i].Event = *ev
				}
				if i < len(original) && run == "run-incident" {
					stale[i].Event = original[i].Event
				}
			}
			for _, k := range []ledger.Keys{nil, keys} {
				want := ledger.Verify(run, recs, k)
				for name, in := range map[string][]ledger.Record{"decoded": fresh, "stale": stale} {
					got := ledger.Verify(run, in, k)
					if errString(got.Err()) != errString(want.Err()) || got.Signatures != want.Signatures || got.Checked != want.Checked ||
						got.Valid != want.Valid || got.HeadHash != want.HeadHash {
						t.Fatalf("keys %v, %s records: %s (valid %d); raw bytes: %s (valid %d)", k != nil, name, got.Summary(), got.Valid,
							want.Summary(), want.Valid)
					}
				}
			}
			if tc.kind != "" && ledger.Verify(run, recs, keys).OK() {
				t.Fatal("the tampered copy verifies")
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
	some := ledger.Keys{"tomas": all["tomas"], "orchestrator": all["orchestrator"]}
	_, stranger := runtreetest.Key("stranger"), mustPub(t, "stranger")
	rotated := ledger.Keys{}
	for id, k := range all {
		rotated[id] = append([]ed25519.PublicKey{stranger}, k...) // an old key first, the current one after
	}
	wrong := ledger.Keys{}
	for id := range all {
		wrong[id] = []ed25519.PublicKey{stranger}
	}
	for _, tc := range []struct {
		name      string
		keys      ledger.Keys
		sigs      string
		checked   int
		unchecked map[string]int
		ok        bool
	}{
		{"no keys", nil, ledger.SigNotChecked, 0, nil, true},
		{"every key", all, ledger.SigVerified, 8, nil, true},
		{"some keys", some, ledger.SigPartial, 5, map[string]int{"research": 1, "writer": 1, "critic": 1}, true},
		{"keys of nobody in the run", ledger.Keys{"someone": all["tomas"]}, ledger.SigNotChecked, 0,
			map[string]int{"tomas": 1, "orchestrator": 4, "research": 1, "writer": 1, "critic": 1}, true},
		{"rotated keys", rotated, ledger.SigVerified, 8, nil, true},
		{"wrong keys", wrong, ledger.SigFailed, 0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := ledger.Verify("run-incident", recs, tc.keys)
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
	full := ledger.Verify("run-incident", recs, nil)
	head := full.HeadHash

	short := ledger.Verify("run-incident", recs[:9], nil)
	if !short.OK() {
		t.Fatalf("a truncated copy fails the chain: %v", short.Err())
	}
	short.ExpectHead(head)
	if short.OK() || short.Broken.Kind != "head" || short.Broken.Seq != 9 || !strings.Contains(short.Broken.Problem, "removed from its end") || short.Valid != 9 {
		t.Fatalf("truncated copy against the head: %+v (valid %d)", short.Broken, short.Valid)
	}

	long := ledger.Verify("run-incident", recs, nil)
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
		if v := ledger.Verify(run, got, demoKeys(t)); !v.OK() || v.Signatures != ledger.SigVerified {
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
