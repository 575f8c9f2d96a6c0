package a2ahttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2acompat/a2av0"
	"github.com/a2aproject/a2a-go/v2/a2asrv"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/bearer"
	"github.com/tollgate/tollgate/broker/ingress"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Config is what the ingress serves with.
type Config struct {
	// Ingress submits the hops.
	Ingress *ingress.Ingress
	// Auth authenticates callers by their bearer token.
	Auth *bearer.Authenticator
	// Directory returns the identities in force: every agent is served.
	Directory func() *broker.Directory
	// PublicURL is the gateway's HTTP listener as callers reach it
	// ("http://gateway:8080"); the cards' interfaces point there.
	PublicURL string
	// Cards returns an agent's own card (from its bridge or config), nil
	// for none: a card is then made from the identity.
	Cards func(agent string) *a2a.AgentCard
	// NATSURL, when set, is listed in the cards as the NATS binding.
	NATSURL string
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// Timeout bounds how long a call waits for its hop's outcome.
	// Default 5 minutes.
	Timeout time.Duration
	// Ledger, when set, is what ListTasks without a contextId lists from:
	// the task list (Start) folds it. Without it, ListTasks needs a
	// contextId.
	Ledger *ledger.Ledger
	// TaskList bounds the task list.
	TaskList TaskListConfig
	// Logger receives the ingress's logs. Default: discard.
	Logger *slog.Logger
}

// Server is the A2A ingress: an http.Handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	v1      http.Handler // v1.0 JSON-RPC
	v0      http.Handler // v0.3 JSON-RPC
	rest    http.Handler // v1.0 HTTP+JSON
	handler *governed
	// tasks is the task list (ListTasks without a contextId); nil without
	// a ledger.
	tasks *taskList
	stop  context.CancelFunc
	done  chan struct{}

	mu sync.Mutex
	// cancels wakes the calls waiting for hops their caller cancelled.
	cancels map[string]chan struct{}
}

// New returns the ingress handler.
func New(cfg Config) (*Server, error) {
	var errs []error
	if cfg.Ingress == nil || cfg.Auth == nil || cfg.Directory == nil {
		errs = append(errs, errors.New("a2ahttp: Ingress, Auth and Directory are required"))
	}
	if cfg.PublicURL == "" {
		errs = append(errs, errors.New("a2ahttp: PublicURL is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	s := &Server{cfg: cfg, log: cfg.Logger, cancels: map[string]chan struct{}{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Ledger != nil {
		s.tasks = newTaskList(cfg.Ledger, cfg.TaskList, s.listable, s.log)
	}
	s.handler = &governed{s: s}
	keepAlive := a2asrv.WithTransportKeepAlive(15 * time.Second)
	s.v1 = a2asrv.NewJSONRPCHandler(s.handler, keepAlive)
	s.v0 = a2av0.NewJSONRPCHandler(s.handler, keepAlive)
	s.rest = a2asrv.NewRESTHandler(s.handler, keepAlive)
	return s, nil
}

// listable reports whether a ListTasks call can return the tasks caller
// made at agent: ListTasks is served only under /<agent>/ of a registered
// agent (ServeHTTP), to an authenticated, so registered, caller.
func (s *Server) listable(caller, agent string) bool {
	d := s.cfg.Directory()
	if id, ok := d.Get(agent); !ok || id.Type != schemas.TypeAgent {
		return false
	}
	_, ok := d.Get(caller)
	return ok
}

// call is what the ingress knows of a request before the SDK decodes it.
type call struct {
	target string
	caller *broker.Identity
	// err, when set, answers every operation: authentication failed, or
	// the A2A version is not spoken.
	err error
}

type callKey struct{}

func callOf(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	if c == nil {
		return &call{err: a2a.ErrInternalError}
	}
	return c
}

// ServeHTTP routes /<agent>/.well-known/agent-card.json, /<agent>/ (JSON-RPC)
// and /<agent>/rest/... (HTTP+JSON).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	agent, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	id, ok := s.cfg.Directory().Get(agent)
	if !ok || id.Type != schemas.TypeAgent {
		writeJSONRPCError(w, http.StatusNotFound, -32001, fmt.Sprintf("no agent %q behind this gateway", agent))
		return
	}
	if rest == ".well-known/agent-card.json" {
		s.serveCard(w, r, agent)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeJSONRPCError(w, http.StatusRequestEntityTooLarge, -32600, err.Error())
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	c := &call{target: agent}
	c.caller, _, err = s.cfg.Auth.Authenticate(r)
	if err != nil {
		c.err = a2a.NewError(a2a.ErrUnauthenticated, "tollgate: "+strings.TrimPrefix(err.Error(), "bearer: "))
		// Refused before the bus: the gateway's log is where it is recorded.
		s.log.Warn("a2a ingress: caller not authenticated", "agent", agent, "remote", r.RemoteAddr, "err", err)
	}
	version := r.Header.Get(a2a.SvcParamVersion)
	if version == "" {
		version = r.URL.Query().Get(a2a.SvcParamVersion)
	}
	ctx := context.WithValue(r.Context(), callKey{}, c)
	r = r.WithContext(ctx)
	switch {
	case rest == "rest" || strings.HasPrefix(rest, "rest/"):
		if version != "" && !isV1(version) && c.err == nil {
			c.err = versionErr(version)
		}
		r2 := r.Clone(ctx)
		r2.URL.Path = "/" + strings.TrimPrefix(strings.TrimPrefix(rest, "rest"), "/")
		r2.URL.RawPath = ""
		s.rest.ServeHTTP(w, r2)
	case rest != "":
		writeJSONRPCError(w, http.StatusNotFound, -32601, "no such path: the agent's JSON-RPC endpoint is /"+agent+"/")
	case version == "" || version == "0.3":
		vw := &v03Errors{w: w}
		s.v0.ServeHTTP(vw, r)
		vw.finish()
	case isV1(version):
		s.v1.ServeHTTP(w, r)
	default:
		if c.err == nil {
			c.err = versionErr(version)
		}
		s.v1.ServeHTTP(w, r)
	}
}

func isV1(v string) bool { return v == "1.0" || v == "1" || strings.HasPrefix(v, "1.0.") }

func versionErr(v string) error {
	return a2a.NewError(a2a.ErrVersionNotSupported, fmt.Sprintf("A2A-Version %q is not spoken here: use 1.0, or 0.3 (or none)", v))
}

// readBody reads the request body up to the limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, fmt.Errorf("request body of %d bytes is over the limit of %d", r.ContentLength, s.cfg.MaxBodyBytes)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fmt.Errorf("request body is over the limit of %d bytes", s.cfg.MaxBodyBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return b, nil
}

// writeJSONRPCError answers a request the SDK never saw (unknown agent,
// body too large) with a JSON-RPC error object.
func writeJSONRPCError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": code, "message": msg},
	})
}

// Start rebuilds the task list from the ledger, in the background, and
// keeps it following the ledger until Close. ListTasks without a
// contextId waits for it (a few seconds at most) and answers from it.
// Without a ledger it does nothing.
func (s *Server) Start(ctx context.Context) {
	if s.tasks == nil || s.stop != nil {
		return
	}
	ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.done = make(chan struct{})
	s.tasks.started.Store(true)
	go func() {
		defer close(s.done)
		s.tasks.follow(ctx)
	}()
}

// Close stops the task list.
func (s *Server) Close() {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
}

// cancelled returns the channel closed when the caller cancels hop.
func (s *Server) cancelled(hop string) (<-chan struct{}, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.cancels[hop] = ch
	return ch, func() {
		s.mu.Lock()
		if s.cancels[hop] == ch {
			delete(s.cancels, hop)
		}
		s.mu.Unlock()
	}
}

func (s *Server) wake(hop string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.cancels[hop]; ok {
		close(ch)
		delete(s.cancels, hop)
	}
}
