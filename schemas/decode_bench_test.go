package schemas

import (
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/tollgate/tollgate/test/bench/cputime"
)

// BenchmarkDecodeEnvelope measures decoding a signed invoke as the
// enforcer receives it, against the decoder it replaced (reference), and
// the validation alone (docs/benchmarks.md).
func BenchmarkDecodeEnvelope(b *testing.B) {
	_, priv := testKey(b)
	signed, err := sampleEnvelope().Sign(signer(priv))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decoder", func(b *testing.B) {
		cputime.Loop(b, func() {
			if _, _, err := DecodeEnvelope(signed, 64<<10); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("reference", func(b *testing.B) {
		cputime.Loop(b, func() {
			if _, _, err := decodeEnvelopeReference(signed, 64<<10); err != nil {
				b.Fatal(err)
			}
		})
	})
	var e Envelope
	_ = jsonv2.Unmarshal(signed, &e)
	b.Run("validate", func(b *testing.B) {
		cputime.Loop(b, func() {
			_ = e.Validate()
		})
	})
}
