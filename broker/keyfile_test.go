package broker_test

import (
	"path/filepath"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
)

// TestAddPublicKey: keys are added to an identity's file once each, in
// order, and read back as the identity's keys, oldest first.
func TestAddPublicKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	_, first := brokertest.NewKey(t)
	_, second := brokertest.NewKey(t)
	for _, pub := range []string{first, first, second} {
		if err := broker.AddPublicKey(dir, "research", pub); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := broker.ReadKeyDir(dir)
	if err != nil || len(keys) != 1 || len(keys["research"]) != 2 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for i, pub := range []string{first, second} {
		want, err := broker.ParsePublicKey(pub)
		if err != nil || !keys["research"][i].Equal(want) {
			t.Fatalf("key %d is %x, want %s (%v)", i, keys["research"][i], pub, err)
		}
	}
}
