package schemas

import (
	"encoding/json"
	"errors"
	"testing"
)

// wrapsSentinel reports whether a decoder's error says what kind of
// problem it is.
func wrapsSentinel(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrVersion) || errors.Is(err, ErrTooLarge)
}

// FuzzDecodeDelivery feeds the agent client's decoder of deliveries
// arbitrary bytes: it never panics, every error wraps a sentinel, and a
// delivery it accepts has a known kind, survives a round trip, and its
// embedded envelope decodes or fails with a sentinel. Seeds are under
// testdata/fuzz/FuzzDecodeDelivery.
func FuzzDecodeDelivery(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"invoke","context":{"run_id":"r1","hop_id":"h1","depth":1},"envelope":{"v":1,"kind":"invoke"}}`))
	f.Add([]byte(`{"v":1,"kind":"denied","denial":{"reason":"policy","message":"no","submit_seq":3}}`))
	f.Add([]byte(`{"v":1,"kind":"reply","envelope":"x"}`))
	f.Add([]byte(`{"v":2,"kind":"timeout"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := DecodeDelivery(in)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !d.Kind.Valid() {
			t.Fatalf("accepted a delivery of kind %q", d.Kind)
		}
		wire, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("accepted delivery does not marshal: %v", err)
		}
		again, err := DecodeDelivery(wire)
		if err != nil || again.Kind != d.Kind || again.Context.HopID != d.Context.HopID {
			t.Fatalf("round trip: %+v, %v", again, err)
		}
		if _, err := d.DecodeEnvelope(); err != nil && !wrapsSentinel(err) {
			t.Fatalf("envelope error %v wraps no sentinel", err)
		}
	})
}

// FuzzDecodeHaltRequest: the enforcer's decoder of operators' halt
// requests never panics, and what it accepts is well formed.
func FuzzDecodeHaltRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"cmd":"halt","run_id":"01J9ZK3","by":"ops","reason":"loop","sent_at":"2026-11-28T00:00:00Z","signature":"abc"}`))
	f.Add([]byte(`{"v":1,"run_id":"a.b","by":"ops","reason":"x","sent_at":"2026-11-28T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"run_id":"r","by":"","reason":"","sent_at":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeHaltRequest(in)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !ValidID(r.RunID) || !ValidPrincipalID(r.By) || r.Reason == "" || r.SentAt.IsZero() {
			t.Fatalf("accepted a malformed halt request %+v", r)
		}
	})
}

// FuzzDecodeApprovalRequest: the enforcer's decoder of operators' approve
// and reject answers never panics, and what it accepts is well formed.
func FuzzDecodeApprovalRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"cmd":"approve","run_id":"01J9ZK3","hop_id":"H1","by":"ops","approve":true,"sent_at":"2026-11-28T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"run_id":"r","hop_id":"h","by":"ops","approve":false,"note":"no","sent_at":"2026-11-28T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"run_id":"r","hop_id":"h","by":"ops","approve":false,"sent_at":"2026-11-28T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeApprovalRequest(in)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !ValidID(r.RunID) || !ValidID(r.HopID) || !ValidPrincipalID(r.By) || !r.Approve && r.Note == "" || len(r.Note) > MaxNoteBytes {
			t.Fatalf("accepted a malformed approval request %+v", r)
		}
	})
}

// FuzzDecodeReloadRequest: the gateway's decoder of operators' reload
// requests never panics, and what it accepts is well formed.
func FuzzDecodeReloadRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"cmd":"reload","by":"ops","reason":"new policy","sent_at":"2026-11-28T00:00:00Z","signature":"abc"}`))
	f.Add([]byte(`{"v":1,"by":"ops*","sent_at":"2026-11-28T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"by":"ops"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeReloadRequest(in)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !ValidPrincipalID(r.By) || len(r.Reason) > MaxNoteBytes || r.SentAt.IsZero() {
			t.Fatalf("accepted a malformed reload request %+v", r)
		}
	})
}

// FuzzDecodeQuotaStatusRequest: the gateway's decoder of operators' quota
// status requests never panics, and what it accepts is well formed.
func FuzzDecodeQuotaStatusRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"cmd":"quota.status","by":"ops","sent_at":"2026-11-28T00:00:00Z","signature":"abc"}`))
	f.Add([]byte(`{"v":1,"by":"ops*","sent_at":"2026-11-28T00:00:00Z"}`))
	f.Add([]byte(`{"v":2,"by":"ops"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeQuotaStatusRequest(in)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !ValidPrincipalID(r.By) || r.SentAt.IsZero() {
			t.Fatalf("accepted a malformed quota status request %+v", r)
		}
	})
}
