package bearer_test

import (
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/bearer"
)

func keeper(t *testing.T, now *time.Time) *bearer.Keeper {
	t.Helper()
	k, err := bearer.New(bearer.GenerateKey(), bearer.WithClock(func() time.Time { return *now }))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIssueVerify(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	k := keeper(t, &now)
	tok, c, err := k.Issue("research", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got != c || got.Subject != "research" || got.Expires() != now.Add(time.Hour) {
		t.Fatalf("claims %+v, issued %+v", got, c)
	}
	other := keeper(t, &now)
	flip := []byte(tok)
	flip[10] ^= 1
	cases := []struct {
		name  string
		k     *bearer.Keeper
		token string
		want  error
	}{
		{"empty", k, "", bearer.ErrMissing},
		{"not a token", k, "hello", bearer.ErrMalformed},
		{"other gateway's key", other, tok, bearer.ErrSignature},
		{"edited claims", k, string(flip), bearer.ErrSignature},
		{"sig cut", k, tok[:len(tok)-3], bearer.ErrSignature},
		{"huge", k, "tgb1." + strings.Repeat("a", 5000), bearer.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.k.Verify(tc.token); !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestExpiryAndRevocation(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	k := keeper(t, &now)
	tok, c, err := k.Issue("writer", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok2, _, err := k.Issue("writer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if _, err := k.Verify(tok); !errors.Is(err, bearer.ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	k.Revoke(c.ID)
	if _, err := k.Verify(tok2); err != nil {
		t.Fatalf("revoking one token revoked another: %v", err)
	}
	c2, _ := k.Verify(tok2)
	k.SetRevoked([]string{c2.ID})
	if _, err := k.Verify(tok2); !errors.Is(err, bearer.ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	k.SetRevoked(nil)
	if _, err := k.Verify(tok2); err != nil {
		t.Fatalf("un-revoked token: %v", err)
	}
}

func TestIssueRefusesBadInput(t *testing.T) {
	now := time.Now()
	k := keeper(t, &now)
	for _, tc := range []struct {
		sub string
		ttl time.Duration
	}{{"", time.Hour}, {"a.b", time.Hour}, {"ok", 0}, {"ok", bearer.MaxTTL + time.Second}} {
		if _, _, err := k.Issue(tc.sub, tc.ttl); err == nil {
			t.Errorf("Issue(%q, %s) succeeded", tc.sub, tc.ttl)
		}
	}
	if _, err := bearer.New([]byte("short")); err == nil {
		t.Error("New accepted a short key")
	}
}

func TestFromRequest(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		err          error
	}{
		{"Bearer abc", "abc", nil},
		{"bearer  abc ", "abc", nil},
		{"", "", bearer.ErrMissing},
		{"Basic abc", "", bearer.ErrMissing},
		{"Bearer ", "", bearer.ErrMissing},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		got, err := bearer.FromRequest(r)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%q: %q, %v", tc.header, got, err)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "bearer.key")
	a, err := bearer.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bearer.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) || len(a) != bearer.KeySize {
		t.Fatal("the key file did not keep its key")
	}
}
