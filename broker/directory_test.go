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
