package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/bearer"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestHTTPListener: http.listen serves what is mounted on it; the callers
// it authenticates hold tokens minted with the key in http.keys (what
// 'tollgate agent token' uses), and a reload that revokes a token or
// disables its identity refuses it from then on.
func TestHTTPListener(t *testing.T) {
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "orchestrator", Tags: []string{"entry"}})
	c.cfg.HTTP.Listen = "127.0.0.1:0"
	g := start(t, c)
	if g.HTTPAddr() == "" || g.IngressPublicKey() == nil {
		t.Fatal("no http listener or ingress key")
	}
	auth := g.Authenticator()
	g.HandleHTTP("GET /whoami", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _, err := auth.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, id.ID)
	}))
	// The CLI mints with the same key file, read from the config.
	keeper, err := c.cfg.BearerKeeper()
	if err != nil {
		t.Fatal(err)
	}
	tok, claims, err := keeper.Issue("tomas", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	whoami := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+g.HTTPAddr()+"/whoami", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := whoami(tok); code != 200 || body != "tomas" {
		t.Fatalf("whoami: %d %s", code, body)
	}
	if code, _ := whoami(""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	ghost, _, _ := keeper.Issue("ghost", time.Hour)
	if code, body := whoami(ghost); code != http.StatusUnauthorized {
		t.Fatalf("unregistered identity: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	next := *c.cfg
	next.HTTP.RevokedTokens = []string{claims.ID}
	if err := g.Reload(ctx, &next, gateway.Options{Policies: policies}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Authenticate(request(tok)); !errors.Is(err, bearer.ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	tok2, _, _ := keeper.Issue("tomas", time.Hour)
	next2 := next
	next2.Users = []gateway.IdentityConfig{next.Users[0]}
	next2.Users[0].Disabled = true
	if err := g.Reload(ctx, &next2, gateway.Options{Policies: policies}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Authenticate(request(tok2)); !errors.Is(err, bearer.ErrDisabled) {
		t.Fatalf("disabled identity: %v", err)
	}
}

func request(tok string) *http.Request {
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}
