package schemas

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchemas(t *testing.T) *jsonschema.Compiler {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	err := fs.WalkDir(JSONSchemaFS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(JSONSchemaFS(), path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return c.AddResource(JSONSchemaBaseURI+path, doc)
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func schemaFor(t *testing.T, c *jsonschema.Compiler, name string) *jsonschema.Schema {
	t.Helper()
	s, err := c.Compile(JSONSchemaBaseURI + name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func validateJSON(s *jsonschema.Schema, b []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return s.Validate(doc)
}

// jsonFields lists the JSON member names of a struct type.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// schemaProps returns the property names at a JSON pointer in a schema file.
func schemaProps(t *testing.T, file, pointer string) []string {
	t.Helper()
	b, err := fs.ReadFile(JSONSchemaFS(), file)
	if err != nil {
		t.Fatal(err)
	}
	var node any
	if err := json.Unmarshal(b, &node); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, tok := range strings.Split(strings.Trim(pointer, "/"), "/") {
		if tok == "" {
			continue
		}
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("%s#%s: %q is not an object", file, pointer, tok)
		}
		node = m[tok]
	}
	props, ok := node.(map[string]any)["properties"].(map[string]any)
	if !ok {
		t.Fatalf("%s#%s has no properties", file, pointer)
	}
	var out []string
	for k := range props {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestJSONSchemasMatchGoTypes keeps every JSON Schema and its Go type in
// step: a member added to one and not the other fails here.
func TestJSONSchemasMatchGoTypes(t *testing.T) {
	cases := []struct {
		file, pointer string
		typ           any
	}{
		{"envelope.json", "", Envelope{}},
		{"envelope.json", "/properties/result", Result{}},
		{"common.json", "/$defs/usage", Usage{}},
		{"delivery.json", "", Delivery{}},
		{"delivery.json", "/properties/context", Context{}},
		{"delivery.json", "/properties/denial", Denial{}},
		{"event.json", "", Event{}},
		{"events/run.started.json", "", RunStarted{}},
		{"events/run.started.json", "/properties/limits", RunLimits{}},
		{"events/hop-decision.json", "", HopDecision{}},
		{"events/hop-decision.json", "/properties/audit/items", Finding{}},
		{"events/hop.completed.json", "", HopCompleted{}},
		{"events/hop.timed_out.json", "", HopTimedOut{}},
		{"events/run.limit_breached.json", "", RunLimitBreached{}},
		{"events/run.halted.json", "", RunHalted{}},
		{"events/run.completed.json", "", RunCompleted{}},
		{"events/hop-decision.json", "/properties/breach", Breach{}},
		{"alert.json", "", Alert{}},
		{"events/hop-decision.json", "/properties/approval", Approval{}},
		{"events/hop.approved.json", "", HopApproved{}},
		{"events/hop.rejected.json", "", HopRejected{}},
		{"events/hop.retried.json", "", HopRetried{}},
		{"events/hop.rerouted.json", "", HopRerouted{}},
	}
	for _, tc := range cases {
		name := tc.file + "#" + tc.pointer
		t.Run(name, func(t *testing.T) {
			got := schemaProps(t, tc.file, tc.pointer)
			want := jsonFields(reflect.TypeOf(tc.typ))
			if !slices.Equal(got, want) {
				t.Errorf("schema properties %v\n Go fields        %v", got, want)
			}
		})
	}
}

func sampleMessage() json.RawMessage {
	return json.RawMessage(`{"messageId":"m-1","role":"ROLE_USER","parts":[{"text":"find sources <&>"}]}`)
}

func sampleEnvelope() *Envelope {
	e := &Envelope{
		Version: EnvelopeVersion, Kind: KindInvoke, RunID: NewID(), ParentHopID: NewID(), HopKey: "2",
		From: "orchestrator", To: "research", Message: sampleMessage(),
		Estimate: &Usage{InputTokens: 10, OutputTokens: 20, CostUSD: 0.01},
		SentAt:   time.Date(2026, 11, 21, 10, 0, 0, 123000000, time.UTC),
	}
	e.HopID = e.DerivedHopID()
	return e
}

func TestSamplesValidateAgainstSchemas(t *testing.T) {
	c := compileSchemas(t)
	_, priv := testKey(t)
	env := sampleEnvelope()
	signed, err := env.Sign(signer(priv))
	if err != nil {
		t.Fatal(err)
	}
	reply := &Envelope{
		Version: EnvelopeVersion, Kind: KindReply, HopID: env.HopID, From: "research", To: "orchestrator",
		Result: &Result{Status: StateCompleted, Output: json.RawMessage(`{"messageId":"r","role":"ROLE_AGENT","parts":[{"text":"ok"}]}`)},
		Usage:  &Usage{InputTokens: 100, OutputTokens: 50, CostUSD: 0.002}, SentAt: time.Now().UTC(),
	}
	replyWire, err := reply.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cancelWire, err := (&Envelope{Version: EnvelopeVersion, Kind: KindCancel, HopID: env.HopID, From: "orchestrator", To: "research", SentAt: time.Now().UTC()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().UTC().Add(time.Minute)
	delivery := &Delivery{
		Version: Version, Kind: DeliverInvoke, Envelope: signed,
		Context: Context{RunID: env.RunID, HopID: env.HopID, ParentHopID: env.ParentHopID, Depth: 1,
			Ancestry: []string{"tomas", "orchestrator"}, OnBehalfOf: "tomas", Deadline: deadline,
			TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		LedgerSeq: 3,
	}
	denied := &Delivery{
		Version: Version, Kind: DeliverDenied, Envelope: signed,
		Context: Context{RunID: env.RunID, HopID: env.HopID},
		Denial:  &Denial{Reason: ReasonPolicy, Message: "forbidden", PolicyIDs: []string{"p"}, SubmitKind: KindInvoke, SubmitSeq: 9},
	}

	envelopeSchema := schemaFor(t, c, "envelope.json")
	for name, wire := range map[string][]byte{"invoke": signed, "reply": replyWire, "cancel": cancelWire} {
		if err := validateJSON(envelopeSchema, wire); err != nil {
			t.Errorf("%s envelope: %v", name, err)
		}
	}
	deliverySchema := schemaFor(t, c, "delivery.json")
	for name, d := range map[string]*Delivery{"invoke": delivery, "denied": denied} {
		b, err := Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateJSON(deliverySchema, b); err != nil {
			t.Errorf("%s delivery: %v", name, err)
		}
	}

	alertSchema := schemaFor(t, c, "alert.json")
	alert, err := Encode(&Alert{Version: Version, RunID: env.RunID, At: time.Now().UTC(), Reason: ReasonLoop, Limit: "cycle", Value: 1, Bound: 0,
		Agent: "research", From: "research", To: "orchestrator", HopID: env.HopID, OnBehalfOf: "tomas", Workflow: "w", By: "gateway",
		Message: "cycle", OpenHops: []string{"a"}, LedgerSeq: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(alertSchema, alert); err != nil {
		t.Errorf("alert: %v", err)
	}
	opAlert, _ := Encode(&Alert{Version: Version, RunID: env.RunID, At: time.Now().UTC(), Reason: ReasonOperator, By: "ops", Message: "stop", LedgerSeq: 3})
	if err := validateJSON(alertSchema, opAlert); err != nil {
		t.Errorf("operator alert: %v", err)
	}

	eventSchema := schemaFor(t, c, "event.json")
	at := time.Now()
	events := []struct {
		typ  EventType
		hop  string
		data any
	}{
		{EventRunStarted, "", &RunStarted{RootHopID: env.HopID, Caller: "tomas", CallerType: TypeUser, OnBehalfOf: "tomas", Workflow: "default",
			Limits:  &RunLimits{MaxDelegationDepth: 5, MaxHops: 1000, MaxTotalTokens: 500000, MaxCostUSD: 25, MaxWallClockSeconds: 600, MaxEdgeRepeats: 20, OnBreach: "halt_and_alert"},
			TraceID: "0af7651916cd43dd8448eb211c80319c"}},
		{EventHopAllowed, env.HopID, &HopDecision{Kind: KindInvoke, From: "orchestrator", To: "research", Action: ActionInvoke, Depth: 1,
			Ancestry: []string{"tomas", "orchestrator"}, OnBehalfOf: "tomas", PolicyIDs: []string{"p"}, Deadline: deadline,
			Audit: []Finding{{Reason: ReasonRate, Message: "would be over"}}, Estimate: &Usage{CostUSD: 1},
			SubmitSeq: 4, Envelope: signed, Size: len(signed), Digest: strings.Repeat("a", 64),
			TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331"}},
		{EventHopDenied, env.HopID, &HopDecision{Kind: KindInvoke, From: "research", To: "orchestrator", Depth: 2,
			Reason: ReasonPolicy, Message: "forbidden by policy", PolicyIDs: []string{"no-reinvoke"}, Cycle: true,
			Breach: &Breach{Limit: "max_edge_repeats", Value: 21, Bound: 20},
			Raw:    []byte("not json"), Size: 8, Digest: strings.Repeat("b", 64)}},
		{EventHopCompleted, env.HopID, &HopCompleted{Status: StateCompleted, By: "research", Usage: &Usage{InputTokens: 1}, LatencyMS: 12,
			SubmitSeq: 5, Envelope: replyWire, Digest: strings.Repeat("c", 64), Error: ""}},
		{EventHopTimedOut, env.HopID, &HopTimedOut{Deadline: deadline, LatencyMS: 45000}},
		{EventRunLimitBreached, env.HopID, &RunLimitBreached{Limit: "max_hops", Value: 1001, Bound: 1000, Reason: ReasonBudget, From: "a", To: "b", Action: "halt", HopID: env.HopID}},
		{EventRunHalted, "", &RunHalted{Reason: "limit", By: "gateway", Limit: "max_hops", OpenHops: []string{env.HopID}}},
		{EventRunCompleted, "", &RunCompleted{Status: StateCompleted, Hops: 4, Tokens: 100, CostUSD: 0.5, DurationMS: 1000}},
	}
	for i, ev := range events {
		e, err := NewEvent(env.RunID, ev.typ, ev.hop, at, ev.data)
		if err != nil {
			t.Fatal(err)
		}
		e.Seq = uint64(i + 1)
		e.PrevHash = GenesisHash
		e.Hash = strings.Repeat("d", 64)
		b, err := Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateJSON(eventSchema, b); err != nil {
			t.Errorf("%s: %v", ev.typ, err)
		}
		got, err := DecodeEvent(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", ev.typ, err)
		}
		data, err := got.DecodeData()
		if err != nil {
			t.Fatalf("%s: decode data: %v", ev.typ, err)
		}
		if reflect.TypeOf(data) != reflect.TypeOf(ev.data) {
			t.Errorf("%s: data decoded as %T, want %T", ev.typ, data, ev.data)
		}
	}
}

// TestBrokenEnvelopesRejected checks that the JSON Schema and the Go decoder
// agree on what a broken envelope is.
func TestBrokenEnvelopesRejected(t *testing.T) {
	c := compileSchemas(t)
	s := schemaFor(t, c, "envelope.json")
	good, err := sampleEnvelope().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := validateJSON(s, good); err != nil {
		t.Fatalf("good sample rejected by schema: %v", err)
	}
	if _, _, err := DecodeEnvelope(good, 0); err != nil {
		t.Fatalf("good sample rejected by decoder: %v", err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := []struct {
		name string
		in   []byte
	}{
		{"missing hop_id", mutate(func(m map[string]any) { delete(m, "hop_id") })},
		{"bad kind", mutate(func(m map[string]any) { m["kind"] = "steal" })},
		{"version 3", mutate(func(m map[string]any) { m["v"] = 3 })},
		{"v1 with a v1.0 message", mutate(func(m map[string]any) { m["v"] = 1 })},
		{"via not the ingress", mutate(func(m map[string]any) { m["via"] = "elsewhere" })},
		{"from with dot", mutate(func(m map[string]any) { m["from"] = "a.b" })},
		{"hop id wildcard", mutate(func(m map[string]any) { m["hop_id"] = "*" })},
		{"invoke without message", mutate(func(m map[string]any) { delete(m, "message") })},
		{"message not A2A", mutate(func(m map[string]any) { m["message"] = map[string]any{"text": "hi"} })},
		{"invoke with result", mutate(func(m map[string]any) { m["result"] = map[string]any{"status": "completed"} })},
		{"negative tokens", mutate(func(m map[string]any) { m["estimate"] = map[string]any{"input_tokens": -1} })},
		{"missing sent_at", mutate(func(m map[string]any) { delete(m, "sent_at") })},
		{"reply without result", mutate(func(m map[string]any) { m["kind"] = "reply"; delete(m, "message") })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := validateJSON(s, tc.in); err == nil {
				t.Errorf("schema accepted %s", tc.in)
			}
			if _, _, err := DecodeEnvelope(tc.in, 0); err == nil {
				t.Errorf("decoder accepted %s", tc.in)
			}
		})
	}
}
