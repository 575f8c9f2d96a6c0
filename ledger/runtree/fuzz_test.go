package runtree_test

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
)

// FuzzReadCopy feeds damaged copies of runs through everything replay does
// with one: read, verify, build the tree of the valid part, render every
// format. None of it may panic, and a copy that verifies always builds.
func FuzzReadCopy(f *testing.F) {
	for _, recs := range [][]ledger.Record{incident(f), loop(f)} {
		var b bytes.Buffer
		if err := runtree.WriteJSONL(&b, recs); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
		f.Add(bytes.Replace(b.Bytes(), []byte(`"depth":1`), []byte(`"depth":-7`), 1))
		f.Add(bytes.Replace(b.Bytes(), []byte(`"parent_hop_id":"h002"`), []byte(`"parent_hop_id":"h004"`), 1))
	}
	keys := demoKeys(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, run, err := runtree.ReadJSONL(bytes.NewReader(data))
		if err != nil {
			return
		}
		v := ledger.Verify(run, recs, keys)
		_ = v.Summary()
		r, err := runtree.FromVerified(v)
		if err != nil {
			if v.OK() {
				t.Fatalf("a copy that verifies does not build: %v", err)
			}
			return
		}
		r.LoadPayloads()
		if err := r.WriteTextOptions(io.Discard, runtree.TextOptions{Payloads: true}); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteDOT(io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteMermaid(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatal(err)
		}
		if v.Valid > 0 {
			if _, err := runtree.FromVerifiedAsOf(v, uint64(v.Valid)); err != nil {
				t.Fatalf("as of the last valid event: %v", err)
			}
		}
	})
}
