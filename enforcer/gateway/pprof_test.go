package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestPprofBehindToken: with admin.pprof_token the heap profile is served
// to a caller presenting the token, refused without it or with another,
// and not served at all without a token configured.
func TestPprofBehindToken(t *testing.T) {
	const tok = "0123456789abcdef-pprof"
	get := func(t *testing.T, addr, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/debug/pprof/heap?debug=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"})
	c.cfg.Admin.Listen, c.cfg.Admin.PprofTokenSHA256 = "127.0.0.1:0", console.HashToken(tok)
	g := start(t, c)
	if code, body := get(t, g.AdminAddr(), "Bearer "+tok); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Fatalf("with the token: %d %.200s", code, body)
	}
	for _, auth := range []string{"", "Bearer wrong-token-wrong-token", tok, "Bearer " + console.HashToken(tok)} {
		if code, _ := get(t, g.AdminAddr(), auth); code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, code)
		}
	}

	off := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"})
	off.cfg.Admin.Listen = "127.0.0.1:0"
	g2 := start(t, off)
	if code, _ := get(t, g2.AdminAddr(), "Bearer "+tok); code == http.StatusOK {
		t.Fatal("profiles served without admin.pprof_token")
	}

	short := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"})
	short.cfg.Admin.Listen, short.cfg.Admin.PprofTokenSHA256 = "127.0.0.1:0", tok
	if err := short.cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pprof_token_sha256") {
		t.Fatalf("a token where its hash belongs: %v", err)
	}
}
