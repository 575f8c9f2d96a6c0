package schemas

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"filippo.io/edwards25519"
	"github.com/tollgate/tollgate/test/bench/cputime"
)

// sameVerdict fails t when the Verifier and crypto/ed25519.Verify answer
// differently for pub, msg and sig, and returns the answer.
func sameVerdict(t *testing.T, pub, msg, sig []byte) bool {
	t.Helper()
	want := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
	v, err := NewVerifier(pub)
	if err != nil {
		if want {
			t.Fatalf("pub %x: refused (%v), the standard library accepts %x", pub, err, sig)
		}
		return false
	}
	// The message in parts, split at a few places, is the same message.
	for _, at := range []int{0, len(msg) / 2, len(msg)} {
		if got := v.Verify(sig, msg[:at], msg[at:]); got != want {
			t.Fatalf("pub %x msg %x sig %x: Verifier %v, crypto/ed25519 %v", pub, msg, sig, got, want)
		}
	}
	return want
}

// smallOrder are encodings of the points of order 1, 2, 4 and 8, some of
// them non-canonical: keys for which cofactorless verification accepts
// forged signatures, where verifiers are known to differ.
var smallOrder = []string{
	"0100000000000000000000000000000000000000000000000000000000000000",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0000000000000000000000000000000000000000000000000000000000000080",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
	"0100000000000000000000000000000000000000000000000000000000000080",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
}

// TestVerifierMatchesStandardLibrary holds the Verifier to crypto/ed25519
// on valid signatures, on every single-bit change of them, on
// non-canonical S, on small-order keys with forged signatures, and on
// random bytes.
func TestVerifierMatchesStandardLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	accepted := 0
	for range 40 {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := random(rng.IntN(600))
		sig := ed25519.Sign(priv, msg)
		if !sameVerdict(t, pub, msg, sig) {
			t.Fatal("a valid signature is refused")
		}
		accepted++
		for bit := 0; bit < 8*len(sig); bit += 1 + rng.IntN(7) {
			bad := bytes.Clone(sig)
			bad[bit/8] ^= 1 << (bit % 8)
			sameVerdict(t, pub, msg, bad)
		}
		if len(msg) > 0 {
			bad := bytes.Clone(msg)
			bad[rng.IntN(len(bad))] ^= 1
			sameVerdict(t, pub, bad, sig)
		}
		badPub := bytes.Clone(pub)
		badPub[rng.IntN(32)] ^= 1 << rng.IntN(8)
		sameVerdict(t, badPub, msg, sig)
		// S + L: the same point, a non-canonical scalar (refused).
		sameVerdict(t, pub, msg, append(bytes.Clone(sig[:32]), addL(sig[32:])...))
		sameVerdict(t, pub, msg, sig[:63])
		sameVerdict(t, pub, msg, random(64))
	}
	// Small-order keys: with A of small order, R = [S]B - [k]A is a forgery
	// that cofactorless verification accepts for some messages.
	for _, enc := range smallOrder {
		pub, _ := hex.DecodeString(enc)
		for range 8 {
			msg := random(40)
			s, _ := new(edwards25519.Scalar).SetUniformBytes(random(64))
			r := new(edwards25519.Point).ScalarBaseMult(s)
			sig := append(r.Bytes(), s.Bytes()...)
			if sameVerdict(t, pub, msg, sig) {
				accepted++
			}
			// R itself of small order, S zero.
			sameVerdict(t, pub, msg, append(bytes.Clone(pub), make([]byte, 32)...))
		}
	}
	for range 200 {
		sameVerdict(t, random(32), random(20), random(64))
	}
	if accepted <= 40 {
		t.Fatalf("only %d accepted signatures: the forged ones never verified, so the test does not reach that path", accepted)
	}
}

// addL returns the 32-byte little-endian s + L, L the group order.
func addL(s []byte) []byte {
	l, _ := hex.DecodeString("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	out := make([]byte, 32)
	carry := 0
	for i := range out {
		v := int(s[i]) + int(l[i]) + carry
		out[i], carry = byte(v), v>>8
	}
	return out
}

// TestVerifierObjects checks envelopes through the Verifier as through
// VerifySignature: a signed one, one changed after signing, one signed by
// another key, one without a signature.
func TestVerifierObjects(t *testing.T) {
	pub, priv := testKey(t)
	other, _ := testKey(t)
	signed, err := sampleEnvelope().Sign(signer(priv))
	if err != nil {
		t.Fatal(err)
	}
	unsigned, _ := sampleEnvelope().Marshal()
	changed := bytes.Replace(signed, []byte(`"research"`), []byte(`"reseorch"`), 1)
	for _, key := range []ed25519.PublicKey{pub, other} {
		v, err := NewVerifier(key)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range [][]byte{signed, unsigned, changed, []byte(`{"signature":"!!"}`), []byte(`{"signature":"AAAA"}`)} {
			got, want := v.VerifyEnvelope(in), VerifySignature(in, key)
			if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
				t.Fatalf("%s: Verifier says %v, VerifySignature %v", in, got, want)
			}
		}
	}
	if v, _ := NewVerifier(pub); v.VerifyEnvelope(signed) != nil {
		t.Fatal("a signed envelope is refused")
	}
}

// FuzzVerifier holds the Verifier to crypto/ed25519 on arbitrary keys,
// messages and signatures (seeded with a valid one and a forgery on a
// small-order key).
func FuzzVerifier(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := []byte("tollgate.envelope.v1\n{}")
	f.Add([]byte(pub), msg, ed25519.Sign(priv, msg))
	id, _ := hex.DecodeString(smallOrder[0])
	s, _ := new(edwards25519.Scalar).SetUniformBytes(bytes.Repeat([]byte{7}, 64))
	f.Add(id, msg, append(new(edwards25519.Point).ScalarBaseMult(s).Bytes(), s.Bytes()...))
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		sameVerdict(t, pub, msg, sig)
	})
}

// BenchmarkVerify compares the Verifier with crypto/ed25519 on a signed
// envelope as the enforcer checks it (docs/benchmarks.md).
func BenchmarkVerify(b *testing.B) {
	pub, priv := testKey(b)
	signed, err := sampleEnvelope().Sign(signer(priv))
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewVerifier(pub)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("stdlib", func(b *testing.B) {
		cputime.Loop(b, func() {
			if err := VerifySignature(signed, pub); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("verifier", func(b *testing.B) {
		cputime.Loop(b, func() {
			if err := v.VerifyEnvelope(signed); err != nil {
				b.Fatal(err)
			}
		})
	})
}
