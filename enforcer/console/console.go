// Package console is the web console of a gateway, served on its admin
// listener: a live list of runs, each run drawn as its delegation tree and
// call graph with a time slider, the ledger verification, a what-if
// against a candidate policy set, an operator's halt, and spend from
// ClickHouse.
//
// The console reads; it decides nothing. Runs are read from the ledger and
// shown through the one fold (ledger.State, through ledger/runtree), after
// the one verifier (ledger.ReadVerified); the what-if is enforcer/whatif;
// a halt (and the answer to a hop held for approval) is the operator's
// signed command of broker/operator, sent with the key the operator logged
// in with; spend is the projections' query
// code. The runs list is kept live with server-sent events fed from the
// LEDGER stream.
//
// Nobody reads anything without logging in: with a console token
// (admin.console.tokens, by SHA-256) as a reader, or with an operator's id
// and nkey seed as that operator. The front end (web/, TypeScript built by
// Vite) is embedded from dist/.
package console

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
)

// Prefix is where the gateway mounts the console on its admin listener.
const Prefix = "/console"

// Deps is what the console reads from the running gateway. Every func is
// called at the time of a request, so that a reload counts.
type Deps struct {
	// Ledger is the gateway's ledger.
	Ledger *ledger.Ledger
	// Config is the console's section of the running config.
	Config func() Config
	// SigningKeys verify the signatures of the runs' envelopes.
	SigningKeys func() ledger.Keys
	// Identities complete the what-if's entities.
	Identities func() []broker.Identity
	// Operators maps the registered operators to their public keys.
	Operators func() map[string]string
	// OperatorConfig is how an operator's client reaches the gateway's bus
	// (URL or in-process, subjects); ID and Key are filled in.
	OperatorConfig func() operator.Config
	// Policies reads the candidate policy sets the config names
	// (Config.PolicyDirs, resolved); nil offers only uploads.
	Policies func() ([]PolicySource, error)
	// Spend, when set, answers the spend charts (ClickHouse).
	Spend Spend
	// Logger receives logins and halts. Default: discard.
	Logger *slog.Logger
}

// PolicySource is a candidate policy set the gateway knows: a folder (or
// file, or glob) of the config and its files.
type PolicySource struct {
	Name  string
	Files []policy.File
}

// Server serves the console.
type Server struct {
	deps     Deps
	prefix   string
	log      *slog.Logger
	sessions *sessions
	throttle *loginThrottle
	live     *live
	mux      *http.ServeMux
}

// New returns the console over deps; Start starts its live feed.
func New(deps Deps) *Server {
	s := &Server{deps: deps, prefix: Prefix, log: deps.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	cfg := deps.Config()
	cfg.SetDefaults()
	s.sessions = newSessions(cfg.SessionTTL)
	s.throttle = newLoginThrottle()
	s.live = newLive(deps.Ledger, s.log)
	s.routes()
	return s
}

// Start starts the live feed from the LEDGER stream: an ordered consumer
// of new events that marks their runs for the event stream. It runs until
// ctx ends or Close.
func (s *Server) Start(ctx context.Context) error { return s.live.start(ctx) }

// Close stops the live feed and ends the event streams.
func (s *Server) Close() { s.live.stop() }

func (s *Server) cfg() Config {
	c := s.deps.Config()
	c.SetDefaults()
	return c
}

func (s *Server) routes() {
	p := s.prefix
	m := http.NewServeMux()
	m.HandleFunc("GET "+p+"/api/session", s.authed(s.sessionInfo))
	m.HandleFunc("POST "+p+"/api/login", s.login)
	m.HandleFunc("POST "+p+"/api/logout", s.logout)
	m.HandleFunc("GET "+p+"/api/runs", s.authed(s.runs))
	m.HandleFunc("GET "+p+"/api/runs/{run}", s.authed(s.run))
	m.HandleFunc("GET "+p+"/api/events", s.authed(s.events))
	m.HandleFunc("GET "+p+"/api/policies", s.authed(s.policies))
	m.HandleFunc("POST "+p+"/api/runs/{run}/whatif", s.authed(s.whatIf))
	m.HandleFunc("POST "+p+"/api/runs/{run}/halt", s.authed(s.halt))
	m.HandleFunc("POST "+p+"/api/runs/{run}/hops/{hop}/approve", s.authed(s.answer(true)))
	m.HandleFunc("POST "+p+"/api/runs/{run}/hops/{hop}/reject", s.authed(s.answer(false)))
	m.HandleFunc("GET "+p+"/api/spend", s.authed(s.spend))
	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "console: no such API: "+r.Method+" "+r.URL.Path)
	}
	m.HandleFunc("GET "+p+"/api/", notFound)
	m.HandleFunc("POST "+p+"/api/", notFound)
	m.Handle("GET "+p+"/", s.static())
	m.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, p+"/", http.StatusFound)
	})
	s.mux = m
}

// ServeHTTP serves the console under Prefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	s.mux.ServeHTTP(w, r)
}

// static serves the built front end; any path that is not a file is the
// app (its router reads the path).
func (s *Server) static() http.Handler {
	sub, err := fs.Sub(webDist, "dist")
	if err != nil {
		return http.NotFoundHandler()
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, s.prefix+"/")
		if rest != "" {
			if f, err := sub.Open(rest); err == nil {
				f.Close()
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/" + rest
				if strings.HasPrefix(rest, "assets/") {
					w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
				}
				files.ServeHTTP(w, r2)
				return
			}
		}
		b, err := fs.ReadFile(sub, "index.html")
		if err != nil {
			http.Error(w, "console not built (enforcer/console/web: npm run build)", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
}
