package console

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestSessionsEnd: a session ends at logout and at its expiry, and a long
// request (an event stream) started with it stops being valid then.
func TestSessionsEnd(t *testing.T) {
	tok := "tgc_reader"
	s := &Server{deps: Deps{Config: func() Config { return Config{Tokens: []Token{{Name: "r", SHA256: HashToken(tok)}}} }}}
	now := time.Unix(1_800_000_000, 0)
	s.sessions = newSessions(time.Hour)
	s.sessions.now = func() time.Time { return now }
	r := httptest.NewRequest("GET", "/console/api/events", nil)

	a, err := s.sessions.create(RoleReader, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.sessions.create(RoleReader, "r", nil)
	if !s.stillValid(r, a) || !s.stillValid(r, b) {
		t.Fatal("fresh sessions are not valid")
	}
	s.sessions.drop(a.id)
	if s.stillValid(r, a) || !s.stillValid(r, b) {
		t.Fatal("logout ended the wrong session")
	}
	now = now.Add(time.Hour + time.Second)
	if s.stillValid(r, b) || s.sessions.get(b.id) != nil {
		t.Fatal("an expired session is still valid")
	}
	// A bearer login lasts as long as its token is configured.
	r.Header.Set("Authorization", "Bearer "+tok)
	bearer := s.who(r)
	if bearer == nil || !s.stillValid(r, bearer) {
		t.Fatal("the bearer token is not valid")
	}
	s.deps.Config = func() Config { return Config{} }
	if s.stillValid(r, bearer) {
		t.Fatal("a removed token is still valid")
	}
}
