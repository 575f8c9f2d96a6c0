package schemas

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"fmt"

	"filippo.io/edwards25519"
)

// Verifier checks Ed25519 signatures by one public key, the key decoded
// once. Its answers are crypto/ed25519.Verify's (RFC 8032, cofactorless,
// canonical S, R compared by its encoding): it runs the same steps with
// the same arithmetic (crypto/ed25519's is a copy of
// filippo.io/edwards25519), minus decoding the key point for every
// signature, and it hashes the signing input in place instead of copying
// it. TestVerifierMatchesStandardLibrary and FuzzVerifier hold it to the
// standard library. Safe for concurrent use.
type Verifier struct {
	pub  []byte
	negA *edwards25519.Point
}

// NewVerifier decodes pub. It fails when pub is not 32 bytes or not the
// encoding of a curve point, for which crypto/ed25519.Verify rejects every
// signature.
func NewVerifier(pub ed25519.PublicKey) (*Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key has %d bytes", ErrSignature, len(pub))
	}
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: public key is not a curve point", ErrSignature)
	}
	return &Verifier{pub: bytes.Clone(pub), negA: new(edwards25519.Point).Negate(a)}, nil
}

// PublicKey returns the key.
func (v *Verifier) PublicKey() ed25519.PublicKey { return bytes.Clone(v.pub) }

// Verify reports whether sig is pub's signature of the concatenation of
// msg's parts, as crypto/ed25519.Verify(pub, concatenation, sig) does.
func (v *Verifier) Verify(sig []byte, msg ...[]byte) bool {
	if len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(v.pub)
	for _, m := range msg {
		h.Write(m)
	}
	var digest [sha512.Size]byte
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false // not with 64 bytes
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	// [S]B = R + [k]A, so [k](-A) + [S]B must encode as R.
	r := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, v.negA, s)
	return bytes.Equal(sig[:32], r.Bytes())
}

// VerifyEnvelope is VerifySignature with the key decoded once.
func (v *Verifier) VerifyEnvelope(compact []byte) error {
	return v.VerifyObject(compact, SigningContext)
}

// VerifyObject is VerifyObject with the key decoded once.
func (v *Verifier) VerifyObject(compact []byte, signingContext string) error {
	unsigned, sig, ok := SplitLastMember(compact, "signature")
	if !ok {
		return fmt.Errorf("%w: no signature as the object's last member", ErrSignature)
	}
	var buf [ed25519.SignatureSize + 3]byte
	raw, err := base64.RawURLEncoding.AppendDecode(buf[:0], []byte(sig))
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is not %d bytes of base64url", ErrSignature, ed25519.SignatureSize)
	}
	if !v.Verify(raw, []byte(signingContext), unsigned) {
		return fmt.Errorf("%w: signature does not match the sender's key", ErrSignature)
	}
	return nil
}
