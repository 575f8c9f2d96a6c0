package brokertest

import (
	"testing"

	"github.com/nats-io/nkeys"
)

type nkeysPair struct {
	kp  nkeys.KeyPair
	pub string
}

func mustKey(t testing.TB) nkeysPair {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return nkeysPair{kp: kp, pub: pub}
}

// NewKey returns a fresh nkey user key pair and its public key.
func NewKey(t testing.TB) (nkeys.KeyPair, string) {
	t.Helper()
	k := mustKey(t)
	return k.kp, k.pub
}
