package interop

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	a2a03 "github.com/a2aproject/a2a-go/a2a"
	a2aclient03 "github.com/a2aproject/a2a-go/a2aclient"
	agentcard03 "github.com/a2aproject/a2a-go/a2aclient/agentcard"
)

// TestGoV03Client: an unmodified a2a-go v0.3 client reads the card the
// gateway serves, speaks v0.3 JSON-RPC to the ingress (no A2A-Version
// header), and reaches the same bridged v1.0 server, delegation and
// ledger as a v1.0 client.
func TestGoV03Client(t *testing.T) {
	e := newEnv(t)
	c := startCast(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc := httpClientFor(e.token("alice"))
	card, err := agentcard03.NewResolver(hc).Resolve(ctx, e.base+"/planner")
	if err != nil {
		t.Fatal(err)
	}
	if card.ProtocolVersion != "0.3" || !strings.HasSuffix(card.URL, "/planner/") {
		t.Fatalf("v0.3 card: version %q url %q", card.ProtocolVersion, card.URL)
	}
	client, err := a2aclient03.NewFromCard(ctx, card, a2aclient03.WithJSONRPCTransport(hc))
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.SendMessage(ctx, &a2a03.MessageSendParams{Message: a2a03.NewMessage(a2a03.MessageRoleUser, a2a03.TextPart{Text: "old news"})})
	if err != nil {
		t.Fatal(err)
	}
	task, ok := res.(*a2a03.Task)
	if !ok {
		t.Fatalf("SendMessage returned %T", res)
	}
	var got string
	if task.Status.Message != nil {
		for _, p := range task.Status.Message.Parts {
			if tp, ok := p.(a2a03.TextPart); ok {
				got += tp.Text
			}
		}
	}
	if task.Status.State != a2a03.TaskStateCompleted || !strings.Contains(got, "plan from researched: old news") || !strings.Contains(got, "nobody-reaches-the-vault") {
		t.Fatalf("v0.3 task %s: %q", task.Status.State, got)
	}
	if c.vault.calls.Load() != 0 {
		t.Fatal("the vault's server was called")
	}
	again, err := client.GetTask(ctx, &a2a03.TaskQueryParams{ID: task.ID})
	if err != nil || again.Status.State != a2a03.TaskStateCompleted {
		t.Fatalf("v0.3 GetTask: %v %v", again, err)
	}
	v, err := e.g.Ledger().ReadVerified(ctx, task.ContextID, e.g.SigningKeys())
	if err != nil || !v.OK() {
		t.Fatalf("ledger of the v0.3 call: %v %+v", err, v)
	}
	// A denied call is a v0.3 JSON-RPC error.
	direct, err := a2aclient03.NewFromCard(ctx, mustCard03(t, ctx, e, "researcher"), a2aclient03.WithJSONRPCTransport(hc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = direct.SendMessage(ctx, &a2a03.MessageSendParams{Message: a2a03.NewMessage(a2a03.MessageRoleUser, a2a03.TextPart{Text: "x"})})
	if err == nil || !strings.Contains(err.Error(), "policy") {
		t.Fatalf("v0.3 denied call: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

func mustCard03(t *testing.T, ctx context.Context, e *env, agentID string) *a2a03.AgentCard {
	t.Helper()
	card, err := agentcard03.NewResolver(httpClientFor("")).Resolve(ctx, e.base+"/"+agentID)
	if err != nil {
		t.Fatal(err)
	}
	return card
}
