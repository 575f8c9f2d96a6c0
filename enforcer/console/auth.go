package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/schemas"
)

// Role is what a login may do.
type Role string

// Roles.
const (
	// RoleReader reads: runs, run pages, what-if, spend (a console token).
	RoleReader Role = "reader"
	// RoleOperator also halts runs, with commands signed by the operator's
	// key (an operator's login).
	RoleOperator Role = "operator"
)

// cookieName is the session cookie.
const cookieName = "tollgate_console"

// session is a login.
type session struct {
	id      string
	role    Role
	name    string
	key     nkeys.KeyPair // the operator's, to sign their commands
	expires time.Time
}

// sessions are the logins, in memory: a restart logs everyone out.
type sessions struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]*session
	now func() time.Time
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[string]*session{}, now: time.Now}
}

func (s *sessions) create(role Role, name string, key nkeys.KeyPair) (*session, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	ss := &session{id: hex.EncodeToString(b), role: role, name: name, key: key, expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for id, o := range s.m {
		if now.After(o.expires) {
			delete(s.m, id)
		}
	}
	s.m[ss.id] = ss
	return ss, nil
}

func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if s.now().After(ss.expires) {
		delete(s.m, id)
		return nil
	}
	return ss
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// Errors of a login.
var (
	// ErrUnauthorized: no token, no session, or one that is not valid.
	ErrUnauthorized = errors.New("console: log in with a console token or an operator's key")
	// ErrForbidden: the login may not do this (halting needs an operator).
	ErrForbidden = errors.New("console: only an operator may do this")
)

// tokenName returns the name of the configured token tok is, or "".
func (s *Server) tokenName(tok string) string {
	if tok == "" {
		return ""
	}
	h := HashToken(tok)
	name := ""
	for _, t := range s.cfg().Tokens {
		if subtle.ConstantTimeCompare([]byte(strings.ToLower(t.SHA256)), []byte(h)) == 1 {
			name = t.Name
		}
	}
	return name
}

// who returns the caller's login: a session cookie, or a console token as
// a bearer token (scripts); nil when neither is valid.
func (s *Server) who(r *http.Request) *session {
	if c, err := r.Cookie(cookieName); err == nil {
		if ss := s.sessions.get(c.Value); ss != nil {
			return ss
		}
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if name := s.tokenName(strings.TrimSpace(tok)); name != "" {
			return &session{role: RoleReader, name: name}
		}
	}
	return nil
}

// stillValid reports whether the login a long request started with still
// holds: its session was not ended, or its bearer token is still
// configured.
func (s *Server) stillValid(r *http.Request, ss *session) bool {
	if ss.id != "" {
		return s.sessions.get(ss.id) != nil
	}
	return s.who(r) != nil
}

// authed wraps h: it answers 401 to a request without a valid login.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := s.who(r)
		if ss == nil {
			writeError(w, http.StatusUnauthorized, ErrUnauthorized.Error())
			return
		}
		h(w, r, ss)
	}
}

// loginRequest is a login: a console token, or an operator's id and nkey
// seed (the key the CLI signs commands with).
type loginRequest struct {
	Token    string `json:"token,omitempty"`
	Operator string `json:"operator,omitempty"`
	Seed     string `json:"seed,omitempty"`
}

// sessionJSON says who is logged in.
type sessionJSON struct {
	Role Role   `json:"role"`
	Name string `json:"name"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.throttle.blocked(r) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "console: too many failed logins from this address; wait a minute")
		return
	}
	var req loginRequest
	if !decodeBody(w, r, &req, 64<<10) {
		return
	}
	var role Role
	var name string
	var key nkeys.KeyPair
	switch {
	case req.Token != "" && req.Operator == "" && req.Seed == "":
		if name = s.tokenName(req.Token); name == "" {
			s.throttle.failed(r)
			s.log.Warn("console login refused", "remote", r.RemoteAddr, "why", "unknown token")
			writeError(w, http.StatusUnauthorized, "console: that token is not configured (admin.console.tokens)")
			return
		}
		role = RoleReader
	case req.Operator != "" && req.Seed != "" && req.Token == "":
		kp, err := s.operatorKey(req.Operator, req.Seed)
		if err != nil {
			s.throttle.failed(r)
			s.log.Warn("console login refused", "remote", r.RemoteAddr, "operator", req.Operator, "why", err)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		role, name, key = RoleOperator, req.Operator, kp
	default:
		writeError(w, http.StatusBadRequest, "console: log in with {\"token\"} or with {\"operator\", \"seed\"}")
		return
	}
	ss, err := s.sessions.create(role, name, key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "console: "+err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: ss.id, Path: s.prefix + "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, Expires: ss.expires})
	s.log.Info("console login", "role", role, "name", name, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, sessionJSON{Role: role, Name: name})
}

// operatorKey checks that seed is the key of operator id as the gateway
// config registers it.
func (s *Server) operatorKey(id, seed string) (nkeys.KeyPair, error) {
	if err := schemas.CheckPrincipalID(id); err != nil {
		return nil, errors.New("console: " + err.Error())
	}
	want, ok := s.deps.Operators()[id]
	if !ok {
		return nil, errors.New("console: " + id + " is not an operator of this gateway")
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
	if err != nil {
		return nil, errors.New("console: the seed is not an nkey seed")
	}
	pub, err := kp.PublicKey()
	if err != nil || subtle.ConstantTimeCompare([]byte(pub), []byte(want)) != 1 {
		return nil, errors.New("console: that seed is not the key registered for operator " + id)
	}
	return kp, nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		s.sessions.drop(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: s.prefix + "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) sessionInfo(w http.ResponseWriter, r *http.Request, ss *session) {
	writeJSON(w, http.StatusOK, sessionJSON{Role: ss.role, Name: ss.name})
}

// decodeBody reads a JSON request body of at most max bytes into v; a
// request that is not JSON (a cross-site form cannot send JSON without
// the browser asking first) or does not decode is answered 400.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, max int64) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "console: send application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "console: unreadable request: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errorJSON is every error answer.
type errorJSON struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorJSON{Error: msg})
}
