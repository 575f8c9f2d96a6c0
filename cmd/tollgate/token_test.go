package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/bearer"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestAgentToken: agent token mints a token bound to a registered identity
// with the key serve checks it with; revoke records its id in the config.
func TestAgentToken(t *testing.T) {
	_, config := writeGatewayConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, errOut, err := tollgate(t, ctx, "agent", "token", "tomas", "--config", config, "--ttl", "1h", "--json")
	if err != nil {
		t.Fatalf("agent token: %v\n%s", err, errOut)
	}
	var got struct {
		Token, ID, Identity string
		ExpiresAt           time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Identity != "tomas" {
		t.Fatalf("agent token --json printed %q: %v", out, err)
	}
	cfg, err := gateway.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	keeper, err := cfg.BearerKeeper()
	if err != nil {
		t.Fatal(err)
	}
	claims, err := keeper.Verify(got.Token)
	if err != nil || claims.Subject != "tomas" || claims.ID != got.ID || time.Until(claims.Expires()) > time.Hour {
		t.Fatalf("minted token: %+v %v", claims, err)
	}
	if _, _, err := tollgate(t, ctx, "agent", "token", "nobody", "--config", config); err == nil {
		t.Fatal("a token was minted for an unregistered identity")
	}
	if _, _, err := tollgate(t, ctx, "agent", "token", "revoke", got.ID, "--config", config); err != nil {
		t.Fatal(err)
	}
	cfg, err = gateway.LoadConfig(config)
	if err != nil {
		t.Fatalf("config after revoke: %v", err)
	}
	if !slices.Contains(cfg.HTTP.RevokedTokens, got.ID) {
		t.Fatalf("revoked_tokens %v", cfg.HTTP.RevokedTokens)
	}
	keeper, _ = cfg.BearerKeeper()
	if _, err := keeper.Verify(got.Token); !errors.Is(err, bearer.ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
}
