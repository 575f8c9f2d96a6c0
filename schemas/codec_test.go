package schemas

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func signer(priv ed25519.PrivateKey) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) { return ed25519.Sign(priv, b), nil }
}

func TestSignAndVerify(t *testing.T) {
	pub, priv := testKey(t)
	otherPub, _ := testKey(t)
	env := sampleEnvelope()
	wire, err := env.Sign(signer(priv))
	if err != nil {
		t.Fatal(err)
	}
	_, compact, err := DecodeEnvelope(wire, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(compact, pub); err != nil {
		t.Fatalf("valid signature rejected: %v", err)
	}

	// Whitespace does not matter: the signature is over the compact form.
	var pretty strings.Builder
	for i, c := range string(wire) {
		pretty.WriteRune(c)
		if c == ',' && i%3 == 0 {
			pretty.WriteString("\n   ")
		}
	}
	if _, compact2, err := DecodeEnvelope([]byte(pretty.String()), 0); err != nil || VerifySignature(compact2, pub) != nil {
		t.Fatalf("re-spaced envelope: decode %v, verify %v", err, VerifySignature(compact2, pub))
	}

	tampered := strings.Replace(string(wire), `"to":"research"`, `"to":"writer"`, 1)
	cases := []struct {
		name string
		wire string
		key  ed25519.PublicKey
	}{
		{"wrong key", string(wire), otherPub},
		{"tampered field", tampered, pub},
		{"no signature", strings.Replace(string(wire), `,"signature":"`+env.Signature+`"`, "", 1), pub},
		{"signature not last", `{"signature":"` + env.Signature + `",` + strings.TrimPrefix(strings.Replace(string(wire), `,"signature":"`+env.Signature+`"`, "", 1), "{"), pub},
		{"garbage signature", strings.Replace(string(wire), env.Signature, "AAAA", 1), pub},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, compact, err := DecodeEnvelope([]byte(tc.wire), 0)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			err = VerifySignature(compact, tc.key)
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("got %v, want ErrSignature", err)
			}
		})
	}
}

func TestDecodeEnvelopeLimits(t *testing.T) {
	wire, err := sampleEnvelope().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeEnvelope(wire, len(wire)-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over limit: got %v, want ErrTooLarge", err)
	}
	for _, in := range []string{"", "null", "[]", "{", `"x"`, "\x00\xff"} {
		if _, _, err := DecodeEnvelope([]byte(in), 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
	v3 := strings.Replace(string(wire), `"v":2`, `"v":3`, 1)
	if _, _, err := DecodeEnvelope([]byte(v3), 0); !errors.Is(err, ErrVersion) {
		t.Errorf("v3: got %v, want ErrVersion", err)
	}
}

// TestEnvelopeVersions: v2 carries A2A v1.0 messages, v1 A2A v0.3 ones
// (still decoded: recorded runs replay, and the enforcer admits them until
// EnvelopeV1Until); via is v2's and names only the ingress.
func TestEnvelopeVersions(t *testing.T) {
	v03 := json.RawMessage(`{"kind":"message","messageId":"m","role":"user","parts":[{"kind":"text","text":"hi"}]}`)
	v10 := json.RawMessage(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}`)
	cases := []struct {
		name    string
		v       int
		via     string
		msg     json.RawMessage
		wantErr error
	}{
		{"v2 with A2A v1.0", EnvelopeVersion, "", v10, nil},
		{"v2 via ingress", EnvelopeVersion, ViaIngress, v10, nil},
		{"v1 with A2A v0.3", EnvelopeV1, "", v03, nil},
		{"v2 with A2A v0.3", EnvelopeVersion, "", v03, ErrMalformed},
		{"v1 with A2A v1.0", EnvelopeV1, "", v10, ErrMalformed},
		{"v1 via ingress", EnvelopeV1, ViaIngress, v03, ErrMalformed},
		{"unknown via", EnvelopeVersion, "somewhere", v10, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := sampleEnvelope()
			e.Version, e.Via, e.Message = tc.v, tc.via, tc.msg
			wire, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := DecodeEnvelope(wire, 0)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if err == nil && (got.Version != tc.v || got.Via != tc.via) {
				t.Fatalf("decoded v=%d via=%q", got.Version, got.Via)
			}
		})
	}
}

func TestSplitLastMember(t *testing.T) {
	cases := []struct {
		in, key, rest, value string
		ok                   bool
	}{
		{`{"a":1,"hash":"ff"}`, "hash", `{"a":1}`, "ff", true},
		{`{"hash":"ff"}`, "hash", `{}`, "ff", true},
		{`{"a":"x","hash":"ff","b":1}`, "hash", "", "", false},
		{`{"a":{"hash":"ff"}}`, "hash", "", "", false},
		{`{"a":"\",\"hash\":\"ff"}`, "hash", "", "", false},
		{`{"xhash":"ff"}`, "hash", "", "", false},
		{`{}`, "hash", "", "", false},
	}
	for _, tc := range cases {
		rest, value, ok := SplitLastMember([]byte(tc.in), tc.key)
		if ok != tc.ok || string(rest) != tc.rest || value != tc.value {
			t.Errorf("SplitLastMember(%s) = %s, %q, %v; want %s, %q, %v", tc.in, rest, value, ok, tc.rest, tc.value, tc.ok)
		}
	}
	if got := string(AppendMember([]byte(`{}`), "k", "v")); got != `{"k":"v"}` {
		t.Errorf("AppendMember to empty object = %s", got)
	}
}

func FuzzSplitLastMember(f *testing.F) {
	for _, s := range []string{`{"a":1,"hash":"ff"}`, `{"hash":"ff"}`, `{"a":"\",\"hash\":\"ff"}`, `{"a":{"hash":"x"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var whole map[string]json.RawMessage
		if json.Unmarshal(in, &whole) != nil {
			return
		}
		rest, value, ok := SplitLastMember(in, "hash")
		if !ok {
			return
		}
		var got string
		if err := json.Unmarshal(whole["hash"], &got); err != nil || got != value {
			t.Fatalf("split value %q, but the object's hash member is %s", value, whole["hash"])
		}
		var restMap map[string]json.RawMessage
		if err := json.Unmarshal(rest, &restMap); err != nil {
			t.Fatalf("rest %s is not an object: %v", rest, err)
		}
		if _, has := restMap["hash"]; has {
			t.Fatalf("rest %s still has a hash member", rest)
		}
	})
}

// FuzzDecodeEnvelope feeds the decoder arbitrary bytes: it must never panic,
// and what it accepts must survive a round trip through its wire form.
func FuzzDecodeEnvelope(f *testing.F) {
	_, priv := testKey(f)
	env := sampleEnvelope()
	signed, err := env.Sign(signer(priv))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	reply, _ := (&Envelope{Version: 1, Kind: KindReply, HopID: "h1", From: "a", To: "b", Result: &Result{Status: StateFailed, Error: "x"}, SentAt: env.SentAt}).Marshal()
	f.Add(reply)
	f.Add([]byte(`{"v":1,"kind":"cancel","hop_id":"h","from":"a","to":"b","sent_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"kind":"invoke","depth":0,"on_behalf_of":"root"}`))
	f.Add([]byte(`{"v":"1"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, compact, err := DecodeEnvelope(in, 64<<10)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !json.Valid(compact) {
			t.Fatalf("compact form %q is not JSON", compact)
		}
		wire, err := e.Marshal()
		if err != nil {
			t.Fatalf("accepted envelope does not marshal: %v", err)
		}
		again, _, err := DecodeEnvelope(wire, 0)
		if err != nil {
			t.Fatalf("wire form %s of an accepted envelope is rejected: %v", wire, err)
		}
		if again.HopID != e.HopID || again.Kind != e.Kind || again.From != e.From || !again.SentAt.Equal(e.SentAt) {
			t.Fatalf("round trip changed the envelope: %+v vs %+v", e, again)
		}
	})
}

// TestIDValidatorsMatchPatterns keeps the hand-written validators and the
// documented patterns (which the JSON Schemas use) in step.
func TestIDValidatorsMatchPatterns(t *testing.T) {
	principal := regexp.MustCompile(PrincipalIDPattern)
	id := regexp.MustCompile(IDPattern)
	inputs := []string{"", "a", "A", "0", "_a", "-a", "a_", "a-b", "a.b", "a*", "a>", "a b", "ab\n", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), "01J9ZK3", "Agent", "run_1-x"}
	for _, in := range inputs {
		if got, want := ValidPrincipalID(in), principal.MatchString(in); got != want {
			t.Errorf("ValidPrincipalID(%q) = %v, pattern says %v", in, got, want)
		}
		if got, want := ValidID(in), id.MatchString(in); got != want {
			t.Errorf("ValidID(%q) = %v, pattern says %v", in, got, want)
		}
	}
}

func FuzzIDValidators(f *testing.F) {
	f.Add("agent-1")
	f.Add("01J9ZK3Q")
	principal := regexp.MustCompile(PrincipalIDPattern)
	id := regexp.MustCompile(IDPattern)
	f.Fuzz(func(t *testing.T, in string) {
		if ValidPrincipalID(in) != principal.MatchString(in) || ValidID(in) != id.MatchString(in) {
			t.Fatalf("validators disagree with the patterns on %q", in)
		}
	})
}

// TestDecodeEnvelopeIsStrictWhereParsersDiffer: input that different JSON
// parsers read differently is malformed, so no parser downstream can be
// told another sender, target or kind than the gateway saw.
func TestDecodeEnvelopeIsStrictWhereParsersDiffer(t *testing.T) {
	wire, err := sampleEnvelope().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	inject := func(member string) []byte {
		return append([]byte(`{`+member+`,`), wire[1:]...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"duplicate from", inject(`"from":"writer"`), "duplicate"},
		{"case-variant from", inject(`"From":"writer"`), `case variant of "from"`},
		{"case-variant kind", inject(`"KIND":"reply"`), `case variant of "kind"`},
		{"case-variant inside usage", []byte(strings.Replace(string(wire), `"estimate":{`, `"estimate":{"Cost_USD":9,`, 1)), `case variant of "cost_usd"`},
		{"invalid UTF-8", inject("\"x\":\"\xff\""), "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeEnvelope(tc.in, 1<<20)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want malformed mentioning %q", err, tc.want)
			}
		})
	}
	// Unknown members that are no case variant are still ignored.
	if _, _, err := DecodeEnvelope(inject(`"x_trace":"abc"`), 1<<20); err != nil {
		t.Fatalf("unknown member refused: %v", err)
	}
}

func TestDerivedHopIDs(t *testing.T) {
	a, b := DeriveHopID("h1", "0"), DeriveHopID("h1", "1")
	if a == b || a != DeriveHopID("h1", "") || a == DeriveHopID("h2", "0") || !ValidID(a) || len(a) != 26 {
		t.Fatalf("derived ids %q %q are not distinct, stable, valid ids", a, b)
	}
	if DeriveHopID(RunScope("r1"), "0") == DeriveHopID("run:r1x", "0") {
		t.Fatal("scopes collide")
	}
	env := sampleEnvelope()
	env.HopID = NewID()
	if err := env.Validate(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "not derived") {
		t.Fatalf("an invoke with a chosen hop id: %v", err)
	}
	root := sampleEnvelope()
	root.ParentHopID, root.RunID = "", ""
	root.HopID = root.DerivedHopID()
	if err := root.Validate(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "names its run") {
		t.Fatalf("a root invoke without a run: %v", err)
	}
}

func TestUsageIsBounded(t *testing.T) {
	for _, u := range []Usage{{InputTokens: MaxTokens + 1}, {OutputTokens: 1 << 62}, {CostUSD: 2 * MaxCostUSD}, {InputTokens: -1}} {
		env := sampleEnvelope()
		env.Estimate = &u
		if err := env.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("estimate %+v accepted: %v", u, err)
		}
	}
	ok := sampleEnvelope()
	ok.Estimate = &Usage{InputTokens: MaxTokens, OutputTokens: MaxTokens, CostUSD: MaxCostUSD}
	if err := ok.Validate(); err != nil {
		t.Errorf("usage at the bounds refused: %v", err)
	}
}
