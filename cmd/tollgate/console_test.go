package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/enforcer/console"
)

func TestConsoleToken(t *testing.T) {
	out, _, err := tollgate(t, context.Background(), "console", "token", "--name", "audit-team", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Name, Token, SHA256 string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if tok.Name != "audit-team" || !strings.HasPrefix(tok.Token, "tgc_") || tok.SHA256 != console.HashToken(tok.Token) {
		t.Fatalf("token: %+v", tok)
	}
	cfg := console.Config{Tokens: []console.Token{{Name: tok.Name, SHA256: tok.SHA256}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the printed hash does not validate: %v", err)
	}
	if _, _, err := tollgate(t, context.Background(), "console", "token", "--name", "no spaces"); err == nil {
		t.Fatal("a bad name was accepted")
	}
}
