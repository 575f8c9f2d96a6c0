package schemas

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// SigningContext prefixes every signed envelope, so that a signature made for
// Tollgate can never be mistaken for one made for another protocol that uses
// the same key (an agent's NATS nkey signs server nonces too).
const SigningContext = "tollgate.envelope.v1\n"

// ControlSigningContext prefixes every signed operator command.
const ControlSigningContext = "tollgate.control.v1\n"

// Encode writes v as compact JSON with HTML characters left unescaped. It is
// the encoding every signature and ledger hash in Tollgate is computed over.
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// AppendMember returns obj (a compact JSON object) with "key":"value" added as
// its last member. value must not need escaping (hex or base64url).
func AppendMember(obj []byte, key, value string) []byte {
	out := make([]byte, 0, len(obj)+len(key)+len(value)+6)
	out = append(out, obj[:len(obj)-1]...)
	if len(obj) > 2 { // not "{}"
		out = append(out, ',')
	}
	out = append(out, '"')
	out = append(out, key...)
	out = append(out, `":"`...)
	out = append(out, value...)
	out = append(out, `"}`...)
	return out
}

// SplitLastMember splits a compact JSON object whose last member is
// "key":"<value>" into the object without that member and the value. ok is
// false when the object does not end with such a member or when the value has
// characters outside [A-Za-z0-9_-] (hex and base64url values fit).
func SplitLastMember(obj []byte, key string) (rest []byte, value string, ok bool) {
	if len(obj) < 2 || obj[len(obj)-1] != '}' || obj[len(obj)-2] != '"' {
		return nil, "", false
	}
	body := obj[:len(obj)-2] // drop `"}`
	q := bytes.LastIndexByte(body, '"')
	if q < 0 {
		return nil, "", false
	}
	value = string(body[q+1:])
	head := body[:q+1] // ends with the opening quote of value
	marker := `"` + key + `":"`
	if !bytes.HasSuffix(head, []byte(marker)) || !tokenValue(value) {
		return nil, "", false
	}
	head = head[:len(head)-len(marker)]
	switch {
	case bytes.HasSuffix(head, []byte{','}):
		head = head[:len(head)-1]
	case bytes.Equal(head, []byte{'{'}):
	default:
		return nil, "", false
	}
	rest = make([]byte, 0, len(head)+1)
	rest = append(rest, head...)
	rest = append(rest, '}')
	return rest, value, true
}

func tokenValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Marshal encodes the envelope in its wire form: compact JSON, fields in
// schema order, signature (when set) last.
func (e *Envelope) Marshal() ([]byte, error) {
	unsigned := *e
	unsigned.Signature = ""
	b, err := Encode(&unsigned)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	if e.Signature != "" {
		b = AppendMember(b, "signature", e.Signature)
	}
	return b, nil
}

// Sign sets e.Signature with sign, which must return an Ed25519 signature of
// its input (an nkeys.KeyPair's Sign does), and returns the signed wire form.
func (e *Envelope) Sign(sign func([]byte) ([]byte, error)) ([]byte, error) {
	e.Signature = ""
	unsigned, err := e.Marshal()
	if err != nil {
		return nil, err
	}
	signed, sig, err := SignObject(unsigned, SigningContext, sign)
	if err != nil {
		return nil, fmt.Errorf("sign envelope: %w", err)
	}
	e.Signature = sig
	return signed, nil
}

// SignObject signs a compact JSON object under a signing context and returns
// it with the signature appended as its last member "signature", and the
// signature itself (unpadded base64url).
func SignObject(obj []byte, signingContext string, sign func([]byte) ([]byte, error)) ([]byte, string, error) {
	raw, err := sign(signingInput(signingContext, obj))
	if err != nil {
		return nil, "", err
	}
	sig := base64.RawURLEncoding.EncodeToString(raw)
	return AppendMember(obj, "signature", sig), sig, nil
}

func signingInput(signingContext string, unsigned []byte) []byte {
	in := make([]byte, 0, len(signingContext)+len(unsigned))
	in = append(in, signingContext...)
	return append(in, unsigned...)
}

// VerifySignature checks the signature of an envelope in wire form (compact
// JSON, as DecodeEnvelope returns it): the "signature" member must be the
// object's last member and an Ed25519 signature by pub over SigningContext
// followed by the object without that member. The errors wrap ErrSignature.
func VerifySignature(compact []byte, pub ed25519.PublicKey) error {
	return VerifyObject(compact, SigningContext, pub)
}

// VerifyObject checks a compact JSON object signed by SignObject under
// signingContext. The errors wrap ErrSignature.
func VerifyObject(compact []byte, signingContext string, pub ed25519.PublicKey) error {
	unsigned, sig, ok := SplitLastMember(compact, "signature")
	if !ok {
		return fmt.Errorf("%w: no signature as the object's last member", ErrSignature)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is not %d bytes of base64url", ErrSignature, ed25519.SignatureSize)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key has %d bytes", ErrSignature, len(pub))
	}
	if !ed25519.Verify(pub, signingInput(signingContext, unsigned), raw) {
		return fmt.Errorf("%w: signature does not match the sender's key", ErrSignature)
	}
	return nil
}

// DecodeEnvelope decodes a submission. It refuses input over limit bytes
// (ErrTooLarge), input that is not JSON or not a valid envelope
// (ErrMalformed, with every problem listed) and other schema versions
// (ErrVersion). Unknown members are ignored: they carry no authority.
//
// It is strict where parsers differ, so that no parser can be told
// something else than the gateway saw: duplicate member names, invalid
// UTF-8, and members of the envelope's own objects whose names are case
// variants of its fields ("From" beside "from") are malformed.
//
// It also returns the envelope in compact wire form, which is what the
// signature is checked over and what the ledger records.
func DecodeEnvelope(data []byte, limit int) (*Envelope, []byte, error) {
	if limit > 0 && len(data) > limit {
		return nil, nil, fmt.Errorf("%w: envelope is %d bytes, the limit is %d", ErrTooLarge, len(data), limit)
	}
	compact := jsontext.Value(bytes.Clone(data))
	if err := compact.Compact(compactStrict...); err != nil {
		// A JSON object with duplicate names or invalid UTF-8 is still
		// returned compacted: the ledger records that form of it.
		lax := jsontext.Value(bytes.Clone(data))
		if lax.Compact() != nil || len(lax) == 0 || lax[0] != '{' {
			lax = nil
		}
		return nil, lax, malformed("envelope", err)
	}
	if len(compact) == 0 || compact[0] != '{' {
		return nil, nil, malformed("envelope", errString("not a JSON object"))
	}
	e, err := decodeCompact(compact)
	if err != nil {
		return nil, compact, malformed("envelope", err)
	}
	if err := e.Validate(); err != nil {
		return e, compact, err
	}
	return e, compact, nil
}

// Field names of the envelope's own objects, by the name of the member
// that holds them ("" for the envelope itself). The A2A message and the
// result's output are opaque to the gateway and not checked here.
var envelopeFields = map[string][]string{
	"":             {"v", "via", "kind", "hop_id", "run_id", "parent_hop_id", "hop_key", "spawned_from", "from", "to", "message", "result", "usage", "estimate", "sent_at", "signature"},
	"spawned_from": {"run_id", "hop_id"},
	"result":       {"status", "output", "error"},
	"usage":        {"input_tokens", "output_tokens", "cost_usd"},
	"estimate":     {"input_tokens", "output_tokens", "cost_usd"},
}

type errString string

func (e errString) Error() string { return string(e) }

func malformed(what string, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var syn *jsontext.SyntacticError
	var sem *jsonv2.SemanticError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%w: %s is not valid JSON at byte %d: %v", ErrMalformed, what, syn.ByteOffset, syn.Err)
	case errors.As(err, &sem):
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, sem)
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s is not valid JSON at byte %d: %v", ErrMalformed, what, se.Offset, se)
	case errors.As(err, &te):
		return fmt.Errorf("%w: %s field %q has the wrong type (%s, want %s)", ErrMalformed, what, te.Field, te.Value, te.Type)
	}
	return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
}

func versionErr(v int) error {
	return fmt.Errorf("%w: v=%d, this gateway speaks v=%d", ErrVersion, v, Version)
}
