package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// decodeEnvelopeReference is DecodeEnvelope as it was before the one-pass
// decoder: compaction, a token decoder over the member names, and a
// reflective unmarshal. The differential tests hold the decoder to it.
func decodeEnvelopeReference(data []byte, limit int) (*Envelope, []byte, error) {
	if limit > 0 && len(data) > limit {
		return nil, nil, fmt.Errorf("%w: envelope is %d bytes, the limit is %d", ErrTooLarge, len(data), limit)
	}
	compact := jsontext.Value(bytes.Clone(data))
	if err := compact.Compact(); err != nil {
		return nil, nil, malformed("envelope", err)
	}
	if len(compact) == 0 || compact[0] != '{' {
		return nil, nil, malformed("envelope", errString("not a JSON object"))
	}
	if err := checkMemberNames(compact, envelopeFields); err != nil {
		return nil, compact, malformed("envelope", err)
	}
	var e Envelope
	if err := jsonv2.Unmarshal(compact, &e); err != nil {
		return nil, compact, malformed("envelope", err)
	}
	if err := e.Validate(); err != nil {
		return &e, compact, err
	}
	return &e, compact, nil
}

// checkMemberNames refuses members of the envelope and of its result,
// usage and estimate objects whose names fold to one of their fields'
// names without being it.
func checkMemberNames(obj jsontext.Value, fields map[string][]string) error {
	dec := jsontext.NewDecoder(bytes.NewReader(obj))
	return checkObject(dec, "", fields)
}

func checkObject(dec *jsontext.Decoder, at string, fields map[string][]string) error {
	if tok, err := dec.ReadToken(); err != nil {
		return err
	} else if tok.Kind() != '{' {
		return dec.SkipValue()
	}
	known := fields[at]
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String()
		for _, f := range known {
			if name != f && strings.EqualFold(name, f) {
				where := "the envelope"
				if at != "" {
					where = at
				}
				return fmt.Errorf("member %q of %s is a case variant of %q", name, where, f)
			}
		}
		if _, nested := fields[name]; nested && at == "" && dec.PeekKind() == '{' {
			if err := checkObject(dec, name, fields); err != nil {
				return err
			}
			continue
		}
		if err := dec.SkipValue(); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// sameDecoding fails t when DecodeEnvelope and the reference disagree on
// in: acceptance, the class of the error, the envelope and the compact
// form, which is returned (and recorded in the ledger) for malformed
// envelopes too.
func sameDecoding(t *testing.T, in []byte) {
	t.Helper()
	got, gotWire, gotErr := DecodeEnvelope(in, 64<<10)
	want, wantWire, wantErr := decodeEnvelopeReference(in, 64<<10)
	class := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, ErrTooLarge):
			return "too large"
		case errors.Is(err, ErrVersion) && errors.Is(err, ErrMalformed):
			return "version+malformed"
		case errors.Is(err, ErrVersion):
			return "version"
		case errors.Is(err, ErrMalformed):
			return "malformed"
		}
		return "other: " + err.Error()
	}
	if class(gotErr) != class(wantErr) {
		t.Fatalf("%q: error %v, the reference's %v", in, gotErr, wantErr)
	}
	if (got == nil) != (want == nil) || got != nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: envelope %+v, the reference's %+v", in, got, want)
	}
	if (gotWire == nil) != (wantWire == nil) || !bytes.Equal(gotWire, wantWire) {
		t.Fatalf("%q: compact form %q, the reference's %q", in, gotWire, wantWire)
	}
}

// decodeCorpus is envelopes and near-envelopes that exercise every path of
// the decoder: each field with the wrong type, null, escapes in names and
// values, case variants at every level, duplicates, whitespace.
func decodeCorpus(t testing.TB) [][]byte {
	_, priv := testKey(t)
	env := sampleEnvelope()
	signed, err := env.Sign(signer(priv))
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := (&Envelope{Version: EnvelopeVersion, Kind: KindReply, HopID: env.HopID, From: "research", To: "orchestrator",
		Result: &Result{Status: StateFailed, Error: "x", ErrorClass: "rate_limited", Output: json.RawMessage(`{"a":[1,{"b":"}"}]}`)},
		Usage:  &Usage{InputTokens: 3, CostUSD: 0.5}, SentAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}).Marshal()
	spawn, _ := (&Envelope{Version: EnvelopeVersion, Kind: KindInvoke, RunID: NewID(), From: "a", To: "b",
		SpawnedFrom: &SpawnRef{RunID: NewID(), HopID: NewID()}, Message: sampleMessage(), SentAt: env.SentAt}).Marshal()
	out := [][]byte{signed, reply, spawn,
		[]byte(`{}`), []byte(`[]`), []byte(`null`), []byte(`"x"`), []byte(` { "v" : 2 } `), []byte(`{"v":2}x`),
		[]byte("{\"v\":2,\"x\":\"\xff\"}"), []byte(`{"v":2,"v":2}`), []byte(`{"v":2,"\u0076":2}`),
		[]byte(`{"message":{"a":1,"a":2}}`), []byte(`{"\u0046rom":"x"}`), []byte(`{"fro\u006d":"x","to":"\u0061"}`),
	}
	fields := []string{"v", "via", "kind", "hop_id", "run_id", "parent_hop_id", "hop_key", "spawned_from", "from", "to",
		"message", "result", "usage", "estimate", "sent_at", "signature"}
	values := []string{`null`, `true`, `0`, `-1`, `2`, `2.0`, `1e0`, `123456789012`, `"2"`, `""`, `"a\"b"`, `"\u00e9"`,
		`[]`, `[1]`, `{}`, `{"status":"completed"}`, `{"Status":"x"}`, `{"input_tokens":1,"INPUT_TOKENS":2}`,
		`{"run_id":"a","hop_id":"b"}`, `{"Run_ID":"a"}`, `"2026-11-21T10:00:00Z"`, `"2026-11-21"`, `{"x":{"y":[{"z":"}"}]}}`}
	for _, f := range fields {
		for _, v := range values {
			m := `"` + f + `":` + v
			out = append(out, append([]byte(`{`+m+`,`), signed[1:]...)) // a duplicate, or a new member
			out = append(out, []byte(`{`+m+`}`))
			out = append(out, []byte(strings.Replace(string(reply), `"`+f+`":`, `"`+strings.ToUpper(f)+`":`, 1)))
			out = append(out, replaceMember(reply, f, v))
			out = append(out, replaceMember(signed, f, v))
		}
	}
	out = append(out, []byte(strings.ReplaceAll(string(signed), `,`, " ,\n\t ")))
	return out
}

// replaceMember replaces the value of the first member named name in a
// compact object, or returns obj when it has none.
func replaceMember(obj []byte, name, value string) []byte {
	for _, m := range members(nil, obj) {
		if m.name == name {
			i := bytes.Index(obj, m.value)
			return append(append(append([]byte{}, obj[:i]...), value...), obj[i+len(m.value):]...)
		}
	}
	return obj
}

// TestDecodeEnvelopeMatchesReference holds the one-pass decoder to the
// decoder it replaced, on a corpus that reaches every field and check.
func TestDecodeEnvelopeMatchesReference(t *testing.T) {
	for _, in := range decodeCorpus(t) {
		sameDecoding(t, in)
	}
}

// FuzzDecodeEnvelopeMatchesReference is the same on arbitrary input.
func FuzzDecodeEnvelopeMatchesReference(f *testing.F) {
	for _, in := range decodeCorpus(f) {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) { sameDecoding(t, in) })
}
