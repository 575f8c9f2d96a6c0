package rows

import (
	"encoding/json"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

// FuzzDecode: the projector's decoder never panics on what a ledger
// message may hold, stores valid JSON objects, and reads every canonical
// event schemas.DecodeEvent reads, the same.
func FuzzDecode(f *testing.F) {
	for _, r := range envelopeRun(f) {
		f.Add(r.Raw)
	}
	f.Add([]byte(`{"data":{"envelope":{},"kind":"invoke"},"v":1,"run_id":"r","seq":1,"type":"hop.denied"}`))
	f.Add([]byte(`{"v":1,"type":"hop.completed","data":{"envelope":1,"raw":"AA==","status":"completed"}}`))
	f.Fuzz(func(t *testing.T, wire []byte) {
		d, err := NewDecoder().Decode(wire, 1)
		if err != nil {
			return
		}
		if !json.Valid([]byte(d.Stored)) || len(d.Stored) == 0 || d.Stored[0] != '{' {
			t.Fatalf("stored data %q is not a JSON object", d.Stored)
		}
		want, err := schemas.DecodeEvent(wire)
		if err != nil {
			return
		}
		// On the canonical encoding of what schemas read (the ledger only
		// holds canonical events), both decoders must agree.
		canonical, err := schemas.Encode(want)
		if err != nil {
			return
		}
		got, err := NewDecoder().Decode(canonical, 1)
		if err != nil {
			t.Fatalf("schemas reads %s, the projector does not: %v", canonical, err)
		}
		if got.Event.RunID != want.RunID || got.Event.Seq != want.Seq || got.Event.Type != want.Type ||
			!got.Event.At.Equal(want.At) || got.Event.HopID != want.HopID || got.Event.Hash != want.Hash {
			t.Fatalf("event\n got %+v\nwant %+v", got.Event, *want)
		}
	})
}
