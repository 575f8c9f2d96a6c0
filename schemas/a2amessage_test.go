package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// a2aMessageReference is how the message was read before readA2AMessage:
// encoding/json into a struct with the four fields. readA2AMessage is held
// to it.
type a2aMessageReference struct {
	Kind      string            `json:"kind"`
	MessageID string            `json:"messageId"`
	Role      string            `json:"role"`
	Parts     []json.RawMessage `json:"parts"`
}

// sameA2AReading fails t when readA2AMessage and encoding/json disagree on
// raw: on whether it is accepted, or on what was read.
func sameA2AReading(t *testing.T, raw []byte) bool {
	t.Helper()
	var ref a2aMessageReference
	refErr := json.Unmarshal(raw, &ref)
	got, err := readA2AMessage(raw)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("%q: readA2AMessage error %v, encoding/json error %v", raw, err, refErr)
	}
	if err != nil {
		return false
	}
	want := a2aMessage{Kind: ref.Kind, MessageID: ref.MessageID, Role: ref.Role, Parts: len(ref.Parts)}
	if got != want {
		t.Fatalf("%q: readA2AMessage read %+v, encoding/json %+v", raw, got, want)
	}
	return true
}

// a2aMessageCases are messages shaped to reach every rule encoding/json
// applies: exact and case-folded names (Kelvin sign and long s included),
// the last match winning, null, wrong types, nesting, whitespace, escapes,
// invalid UTF-8, trailing data and non-objects.
func a2aMessageCases() []string {
	values := []string{
		`"m1"`, `""`, `null`, `1`, `true`, `{}`, `[]`, `{"a":[1,{"b":null}]}`, `[{"text":"x"}]`,
		`[1,"two",null,{"k":[]}]`, `"ROLE_USER"`, `"ROLE\u005fAGENT"`, `"user"`, `"message"`, `"\ud800"`, "\"\xff\"",
	}
	names := []string{
		"kind", "messageId", "role", "parts", "Kind", "MESSAGEID", "messageid", "ROLE", "Parts", "pArTs",
		"\u212aind", "part\u017f", "other", "", "message_id", "roles",
	}
	var out []string
	for _, n := range names {
		for _, v := range values {
			out = append(out, fmt.Sprintf(`{%q:%s}`, n, v))
			out = append(out, fmt.Sprintf(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}],%q:%s}`, n, v))
			out = append(out, fmt.Sprintf(`{%q:%s,"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}`, n, v))
		}
	}
	out = append(out,
		`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}`,
		` { "messageId" : "m" , "role" : "user" , "kind" : "message" , "parts" : [ 1 ] } `,
		`{"parts":[1],"Parts":null}`, `{"parts":[1],"parts":[]}`, `{"role":"a","role":null}`, `{"role":"a","ROLE":"b"}`,
		`{"parts":[1,2],"parts":"x"}`, `{"kind":1,"kind":"message"}`, `{"messageId":"m"}{}`, `{"messageId":"m"} `, `{"messageId":"m"},`,
		`null`, ` null `, `[]`, `"s"`, `1`, `true`, ``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"parts":[1,]}`, `[1`,
		`{"parts":[1],"messageId":"m","role":"ROLE_USER","extra":{"deep":[[[[[]]]]]}}`, "{\"m\xffx\":1}", `{"\u006bind":"message"}`,
	)
	return out
}

func TestReadA2AMessageMatchesEncodingJSON(t *testing.T) {
	accepted := 0
	for _, c := range a2aMessageCases() {
		if sameA2AReading(t, []byte(c)) {
			accepted++
		}
	}
	if accepted < 100 {
		t.Fatalf("only %d cases accepted: the test does not reach the reading", accepted)
	}
}

// TestCheckA2AMessageVerdicts pins what the check says of a few messages.
func TestCheckA2AMessageVerdicts(t *testing.T) {
	for _, c := range []struct {
		v    int
		raw  string
		want string // "" for accepted, else a substring of the error
	}{
		{EnvelopeVersion, `{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}`, ""},
		{EnvelopeVersion, `{"MessageId":"m","Role":"ROLE_AGENT","PARTS":[{}]}`, ""},
		{EnvelopeV1, `{"kind":"message","messageId":"m","role":"agent","parts":[{}]}`, ""},
		{EnvelopeVersion, `{"messageId":"m","role":"user","parts":[{}]}`, `role is "user"`},
		{EnvelopeV1, `{"messageId":"m","role":"user","parts":[{}]}`, `kind is ""`},
		{EnvelopeVersion, `{"role":"ROLE_USER","parts":[{}]}`, "messageId is missing"},
		{EnvelopeVersion, `{"messageId":"m","role":"ROLE_USER","parts":[{}],"parts":null}`, "parts is empty"},
		{EnvelopeVersion, `{"messageId":7,"role":"ROLE_USER","parts":[{}]}`, `member "messageId" is a JSON number, not a string`},
		{EnvelopeVersion, `{"messageId":"m","role":"ROLE_USER","parts":{}}`, `member "parts" is a JSON object, not a list`},
		{EnvelopeVersion, `["m"]`, "a JSON array, not an object"},
		{EnvelopeVersion, `{"messageId":"m"`, "not an A2A message object"},
	} {
		err := checkA2AMessage(c.v, json.RawMessage(c.raw))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.raw, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error with %q", c.raw, err, c.want)
		}
	}
}

func FuzzReadA2AMessage(f *testing.F) {
	for _, c := range a2aMessageCases() {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		sameA2AReading(t, raw)
	})
}

func BenchmarkReadA2AMessage(b *testing.B) {
	raw := []byte(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"summarise the sources on agent governance and list the open questions"}]}`)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m a2aMessageReference
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := readA2AMessage(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
