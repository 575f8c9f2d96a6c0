package runtree_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/ledger/runtree/runtreetest"
)

func BenchmarkProto(b *testing.B) {
	recs, err := runtreetest.Wide("bench", time.Unix(1700000000, 0), 10000).Records()
	if err != nil {
		b.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, m := range runtreetest.WideCast() {
		k, _ := broker.ParsePublicKey(runtreetest.PublicKey(m.ID))
		keys[m.ID] = k
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if err := ledger.Verify("bench", recs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sigs", func(b *testing.B) {
		for b.Loop() {
			if err := ledger.VerifySignatures(recs, func(id string) ed25519.PublicKey { return keys[id] }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fold", func(b *testing.B) {
		for b.Loop() {
			if _, err := ledger.Fold("bench", recs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			if _, err := runtree.Build("bench", recs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
