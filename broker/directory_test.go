package broker_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// TestGatewayIDReserved: no identity can be registered as the gateway,
// which the ledger names as the closer of hops it closed itself (and whose
// closings carry no envelope to verify).
func TestGatewayIDReserved(t *testing.T) {
	_, err := broker.NewDirectory([]broker.Identity{{ID: schemas.GatewayActor, Type: schemas.TypeAgent}})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("an identity named %q: %v", schemas.GatewayActor, err)
	}
}

// TestToolResource: a tool of an MCP server is the Cedar resource
// "<server>/<tool>"; only tools have one, it must be well formed, and two
// tools cannot share one.
func TestToolResource(t *testing.T) {
	dir, err := broker.NewDirectory([]broker.Identity{
		{ID: "web-fetch", Type: schemas.TypeTool, Resource: "web/fetch"},
		{ID: "calc", Type: schemas.TypeTool},
	})
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := dir.Get("web-fetch"); f.ResourceID() != "web/fetch" {
		t.Fatalf("web-fetch's resource %q", f.ResourceID())
	}
	if c, _ := dir.Get("calc"); c.ResourceID() != "calc" {
		t.Fatalf("calc's resource %q, want its id", c.ResourceID())
	}
	for _, tc := range []struct {
		name    string
		ids     []broker.Identity
		wantErr string
	}{
		{"not a tool", []broker.Identity{{ID: "gpt", Type: schemas.TypeModel, Resource: "x/gpt"}}, "only a tool"},
		{"no server", []broker.Identity{{ID: "t", Type: schemas.TypeTool, Resource: "/fetch"}}, "not a valid tool resource"},
		{"no slash", []broker.Identity{{ID: "t", Type: schemas.TypeTool, Resource: "fetch"}}, "not a valid tool resource"},
		{"bad tool name", []broker.Identity{{ID: "t", Type: schemas.TypeTool, Resource: `web/fe"tch`}}, "not a valid tool resource"},
		{"shared", []broker.Identity{{ID: "a", Type: schemas.TypeTool, Resource: "web/fetch"}, {ID: "b", Type: schemas.TypeTool, Resource: "web/fetch"}}, `also "a"'s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := broker.NewDirectory(tc.ids)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}
