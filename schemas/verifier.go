package schemas

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Verifier checks Ed25519 signatures by one public key, the key decoded
// and expanded once. Its answers are crypto/ed25519.Verify's (RFC 8032,
// cofactorless, canonical S, R compared by its encoding, small-order and
// non-canonical keys allowed): it verifies with curve25519-voi's
// precomputed-key verifier under the options that library keeps for exactly
// that behaviour (VerifyOptionsStdLib), which is about 1.7 times as fast on
// amd64 as the standard library (docs/benchmarks.md).
// TestVerifierMatchesStandardLibrary and FuzzVerifier hold it to the
// standard library. Safe for concurrent use.
type Verifier struct {
	pub  []byte
	key  *voi.ExpandedPublicKey
	opts *voi.Options
}

// NewVerifier decodes pub. It fails when pub is not 32 bytes or not the
// encoding of a curve point, for which crypto/ed25519.Verify rejects every
// signature.
func NewVerifier(pub ed25519.PublicKey) (*Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key has %d bytes", ErrSignature, len(pub))
	}
	key, err := voi.NewExpandedPublicKey(voi.PublicKey(pub))
	if err != nil {
		return nil, fmt.Errorf("%w: public key is not a curve point", ErrSignature)
	}
	return &Verifier{pub: bytes.Clone(pub), key: key, opts: &voi.Options{Verify: voi.VerifyOptionsStdLib}}, nil
}

// PublicKey returns the key.
func (v *Verifier) PublicKey() ed25519.PublicKey { return bytes.Clone(v.pub) }

// Verify reports whether sig is pub's signature of the concatenation of
// msg's parts, as crypto/ed25519.Verify(pub, concatenation, sig) does.
func (v *Verifier) Verify(sig []byte, msg ...[]byte) bool {
	if len(sig) != ed25519.SignatureSize {
		return false
	}
	var whole []byte
	switch len(msg) {
	case 0:
	case 1:
		whole = msg[0]
	default:
		n := 0
		for _, m := range msg {
			n += len(m)
		}
		whole = make([]byte, 0, n)
		for _, m := range msg {
			whole = append(whole, m...)
		}
	}
	// The options are fixed and valid and no message is pre-hashed, so
	// the library's only panics (on invalid options) cannot happen.
	return voi.VerifyExpandedWithOptions(v.key, whole, sig, v.opts)
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
