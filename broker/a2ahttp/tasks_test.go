package a2ahttp

import (
	"encoding/json"
	"testing"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/tollgate/tollgate/schemas"
)

func TestTaskIDRoundTrip(t *testing.T) {
	run, hop := schemas.NewID(), schemas.DeriveHopID("run:x", "0")
	gotRun, gotHop, ok := ParseTaskID(TaskID(run, hop))
	if !ok || gotRun != run || gotHop != hop {
		t.Fatalf("ParseTaskID(TaskID(%s, %s)) = %s %s %v", run, hop, gotRun, gotHop, ok)
	}
	for _, bad := range []a2a.TaskID{"", "nodot", ".hop", "run.", "run.hop.extra", "ru n.hop", "run.h/op"} {
		if _, _, ok := ParseTaskID(bad); ok {
			t.Errorf("ParseTaskID(%q) accepted", bad)
		}
	}
}

func TestUsageOf(t *testing.T) {
	cases := []struct {
		meta string
		want *schemas.Usage
	}{
		{`{"tollgate.usage":{"input_tokens":3,"output_tokens":2,"cost_usd":0.5}}`, &schemas.Usage{InputTokens: 3, OutputTokens: 2, CostUSD: 0.5}},
		{`{}`, nil},
		{`{"tollgate.usage":"lots"}`, nil},
		{`{"tollgate.usage":{"input_tokens":-1}}`, nil},
		{`{"tollgate.usage":{"input_tokens":1e30}}`, nil},
		{`{"tollgate.usage":{"cost_usd":1e12}}`, nil},
	}
	for _, tc := range cases {
		var meta map[string]any
		if err := json.Unmarshal([]byte(tc.meta), &meta); err != nil {
			t.Fatal(err)
		}
		got := UsageOf(meta)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("UsageOf(%s) = %+v, want %+v", tc.meta, got, tc.want)
		}
	}
}

// FuzzTaskInputs feeds what callers and servers control (task ids, the
// parent task, usage metadata) to the ingress's parsers: they refuse or
// accept, never panic, and what they accept is well formed.
func FuzzTaskInputs(f *testing.F) {
	f.Add("01ABC.5ECDW7B3URJ3SMFOSZW6N6IEOQ", `{"input_tokens":1}`)
	f.Add("x.y", `{"cost_usd":"NaN"}`)
	f.Add("..", `[]`)
	f.Fuzz(func(t *testing.T, id, usage string) {
		if run, hop, ok := ParseTaskID(a2a.TaskID(id)); ok && (!schemas.ValidID(run) || !schemas.ValidID(hop)) {
			t.Fatalf("accepted %q as run %q hop %q", id, run, hop)
		}
		var v any
		if json.Unmarshal([]byte(usage), &v) != nil {
			return
		}
		if u := UsageOf(map[string]any{UsageMetadataKey: v}); u != nil && (u.InputTokens < 0 || u.OutputTokens < 0 || u.CostUSD < 0) {
			t.Fatalf("accepted usage %+v", u)
		}
		req := &a2a.SendMessageRequest{Message: &a2a.Message{Metadata: map[string]any{ParentTaskKey: id}}}
		if run, hop, named, err := parentTask(req); !named || err == nil && (!schemas.ValidID(run) || !schemas.ValidID(hop)) {
			t.Fatalf("parent task %q: %q %q %v %v", id, run, hop, named, err)
		}
	})
}
