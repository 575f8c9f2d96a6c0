package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/schemas"
)

// TestConnectFailsFast: a key that is another identity's is refused at
// once, naming whose it is; an identity whose delivery consumer does not
// exist gets an error, not a wait for the context's deadline.
func TestConnectFailsFast(t *testing.T) {
	kpA, pubA := brokertest.NewKey(t)
	kpB, pubB := brokertest.NewKey(t)
	bus := brokertest.Start(t, brokertest.Options{Layout: broker.Layout{Identities: []*broker.Identity{
		{ID: "alice", Type: schemas.TypeAgent, PublicKey: pubA},
		{ID: "bob", Type: schemas.TypeAgent, PublicKey: pubB},
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	_, err := agent.Connect(ctx, agent.Config{ID: "alice", Key: kpB, URL: bus.Server.ClientURL()})
	if !errors.Is(err, broker.ErrWrongKey) || !strings.Contains(err.Error(), "identity bob's key") {
		t.Fatalf("alice with bob's key: %v", err)
	}
	// No consumer was provisioned for alice.
	_, err = agent.Connect(ctx, agent.Config{ID: "alice", Key: kpA, URL: bus.Server.ClientURL()})
	if err == nil || !strings.Contains(err.Error(), "consumer") {
		t.Fatalf("alice without a consumer: %v", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("took %s to fail", d)
	}
}
