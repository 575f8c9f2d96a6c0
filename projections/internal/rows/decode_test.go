package rows

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// envelopeRun is a run whose decisions and completions carry envelopes
// (one with a nested "envelope" key of its own) and raw bytes.
func envelopeRun(t testing.TB) []ledger.Record {
	b := &runBuilder{t: t, run: "r3", at: t0}
	env := json.RawMessage(`{"v":1,"kind":"invoke","hop_id":"h0","message":{"parts":[{"kind":"text","text":"a \"quoted\" envelope"}],"metadata":{"envelope":"nested, kept in the ledger only"}},"signature":"abc"}`)
	b.add(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: "h0", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas", Workflow: "w"})
	b.add(schemas.EventHopAllowed, "h0", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator",
		Ancestry: []string{"tomas"}, PolicyIDs: []string{"p"}, Envelope: env, Size: len(env), Digest: "d0", Deadline: t0.Add(time.Hour)})
	b.add(schemas.EventHopDenied, "", &schemas.HopDecision{From: "tomas", Reason: schemas.ReasonMalformed, Raw: []byte("\x00garbage{"), Size: 9, Digest: "d1"})
	b.add(schemas.EventHopCompleted, "h0", &schemas.HopCompleted{Status: schemas.StateCompleted, By: "orchestrator",
		Usage: &schemas.Usage{InputTokens: 1, CostUSD: 0.5}, Envelope: env, Digest: "d2"})
	b.add(schemas.EventHopPending, "h1", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "orchestrator", To: "payments",
		Ancestry: []string{"tomas", "orchestrator"}, Envelope: env, Size: len(env), Digest: "d3", Deadline: t0.Add(time.Hour),
		Approval: &schemas.Approval{Approvers: []string{"finance"}, PolicyIDs: []string{"p2"}, Deadline: t0.Add(time.Hour)}})
	b.add(schemas.EventHopApproved, "h1", &schemas.HopApproved{By: "olga", Note: "ok", Deadline: t0.Add(2 * time.Hour)})
	b.add(schemas.EventHopPending, "h2", &schemas.HopDecision{Kind: schemas.KindInvoke, From: "orchestrator", To: "payments", Digest: "d4",
		Approval: &schemas.Approval{Approvers: []string{"finance"}, Deadline: t0.Add(time.Hour)}})
	b.add(schemas.EventHopRejected, "h2", &schemas.HopRejected{By: "olga", Message: "no"})
	b.add(schemas.EventHopRetried, "h1", &schemas.HopRetried{Attempt: 2, Cause: "timeout", RetryAt: t0.Add(time.Minute), Deadline: t0.Add(time.Hour)})
	b.add(schemas.EventHopRerouted, "h1", &schemas.HopRerouted{From: "payments", To: "payments-backup", Cause: "unavailable", Deadline: t0.Add(time.Hour)})
	b.add(schemas.EventRunLimitBreached, "", &schemas.RunLimitBreached{Limit: "max_hops", Value: 2, Bound: 1, Reason: schemas.ReasonBudget, Action: "halt"})
	b.add(schemas.EventRunHalted, "", &schemas.RunHalted{Reason: "budget", By: "gateway"})
	b.add(schemas.EventHopTimedOut, "h0", &schemas.HopTimedOut{Deadline: t0, LatencyMS: 5})
	b.add(schemas.EventRunCompleted, "", &schemas.RunCompleted{Status: schemas.StateCompleted, Hops: 1})
	return b.recs
}

// TestDecodeAgreesWithSchemas: the fast decoder yields what
// schemas.DecodeEvent and DecodeData yield, for every event type.
func TestDecodeAgreesWithSchemas(t *testing.T) {
	x := NewDecoder()
	recs := envelopeRun(t)
	seen := map[schemas.EventType]bool{}
	for _, r := range recs {
		seen[r.Event.Type] = true
	}
	for _, typ := range schemas.EventTypes {
		if !seen[typ] {
			t.Errorf("the test run has no %s event", typ)
		}
	}
	for _, r := range recs {
		got, err := x.Decode(r.Raw, r.StreamSeq)
		if err != nil {
			t.Fatalf("seq %d: %v", r.Event.Seq, err)
		}
		want, err := schemas.DecodeEvent(r.Raw)
		if err != nil {
			t.Fatal(err)
		}
		wantData, err := want.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Event, *want) {
			t.Errorf("seq %d: event\n got %+v\nwant %+v", r.Event.Seq, got.Event, *want)
		}
		switch w := wantData.(type) { // the wire form is not decoded
		case *schemas.HopDecision:
			w.Envelope, w.Raw = nil, nil
		case *schemas.HopCompleted:
			w.Envelope = nil
		}
		if !reflect.DeepEqual(got.Data, wantData) {
			t.Errorf("seq %d: data\n got %+v\nwant %+v", r.Event.Seq, got.Data, wantData)
		}
		// Stored is the data without the wire members, everything else kept.
		var stored, full map[string]any
		if err := json.Unmarshal([]byte(got.Stored), &stored); err != nil {
			t.Fatalf("seq %d: stored data %q: %v", r.Event.Seq, got.Stored, err)
		}
		if err := json.Unmarshal(want.Data, &full); err != nil {
			t.Fatal(err)
		}
		delete(full, "envelope")
		delete(full, "raw")
		if !reflect.DeepEqual(stored, full) {
			t.Errorf("seq %d: stored %v\nwant %v", r.Event.Seq, slices.Sorted(maps.Keys(stored)), slices.Sorted(maps.Keys(full)))
		}
	}
}

func TestStoredDropsALeadingWireMember(t *testing.T) {
	wire := []byte(`{"v":1,"run_id":"r","seq":2,"type":"hop.allowed","data":{"envelope":{"a":[1,{"b":"}"}]} , "kind":"invoke","raw":"AAE=","size":3},"hash":"h"}`)
	d, err := NewDecoder().Decode(wire, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{ "kind":"invoke","size":3}`; d.Stored != want {
		t.Fatalf("stored %s, want %s", d.Stored, want)
	}
	if hd := d.Data.(*schemas.HopDecision); hd.Kind != schemas.KindInvoke || hd.Size != 3 || d.Event.Hash != "h" {
		t.Fatalf("decoded %+v %+v", d.Event, hd)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		wire string
		want error
	}{
		"not json":        {`{"v":1,`, schemas.ErrMalformed},
		"unknown type":    {`{"v":1,"run_id":"r","seq":1,"type":"run.exploded","data":{}}`, schemas.ErrMalformed},
		"version 2":       {`{"v":2,"run_id":"r","seq":1,"type":"run.started","data":{}}`, schemas.ErrVersion},
		"bad data":        {`{"v":1,"run_id":"r","seq":1,"type":"run.started","data":{"root_hop_id":7}}`, schemas.ErrMalformed},
		"data not object": {`{"v":1,"run_id":"r","seq":1,"type":"hop.allowed","data":[]}`, schemas.ErrMalformed},
	} {
		if _, err := NewDecoder().Decode([]byte(tc.wire), 1); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// The data before the type, as a non-canonical encoder may write it.
	d, err := NewDecoder().Decode([]byte(`{"data":{"limit":"max_hops","value":2,"bound":1,"reason":"budget","action":"halt"},"v":1,"run_id":"r","seq":3,"type":"run.limit_breached"}`), 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := d.Data.(*schemas.RunLimitBreached); !ok || b.Limit != "max_hops" || d.Event.Seq != 3 {
		t.Fatalf("decoded %+v", d)
	}
}

func BenchmarkDecode(b *testing.B) {
	recs := envelopeRun(b)
	b.Run("projector", func(b *testing.B) {
		x := NewDecoder()
		for b.Loop() {
			for _, r := range recs {
				if _, err := x.Decode(r.Raw, r.StreamSeq); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("schemas", func(b *testing.B) {
		for b.Loop() {
			for _, r := range recs {
				ev, err := schemas.DecodeEvent(r.Raw)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ev.DecodeData(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
