package gateway

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/bearer"
	"github.com/tollgate/tollgate/broker/ingress"
)

// HTTPConfig is the http section: the listener agents and unmodified A2A
// (and model, tool) clients call, with per-identity bearer tokens.
type HTTPConfig struct {
	// Listen is host:port; empty serves no HTTP listener.
	Listen string `yaml:"listen"`
	// Keys is the folder of the listener's keys: bearer.key (the token
	// key 'tollgate agent token' mints with) and ingress.nk (the key the
	// ingress signs the envelopes it submits with). Default: <data_dir>/http
	// with the embedded server, required with an external one. Created
	// when missing.
	Keys string `yaml:"keys"`
	// RevokedTokens lists the ids of revoked bearer tokens ('tollgate agent
	// token revoke' adds to it); a reload applies it.
	RevokedTokens []string `yaml:"revoked_tokens"`
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// PublicURL is the listener as callers reach it; the agent cards point
	// there. Default: http:// and the listen address.
	PublicURL string `yaml:"public_url"`
	// CallTimeout bounds how long an HTTP call waits for its hop's
	// outcome. Default 5 minutes.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// TasksWindow is how far back in the ledger the A2A task list
	// (ListTasks without a contextId) is rebuilt when serve starts.
	// Default 24 hours.
	TasksWindow time.Duration `yaml:"tasks_window"`
	// TasksPerCaller bounds the tasks ListTasks lists per caller and
	// agent (the newest). Default 1,000.
	TasksPerCaller int `yaml:"tasks_per_caller"`
	// TasksMax bounds the tasks the A2A task list holds in all (the
	// oldest decided dropped first). Default 100,000.
	TasksMax int `yaml:"tasks_max"`
}

// DefaultMaxBodyBytes bounds an HTTP request body when http.max_body_bytes
// is not set.
const DefaultMaxBodyBytes = 1 << 20

// Validate checks the section.
func (c HTTPConfig) Validate() error {
	var errs []error
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("http.listen %q: %w", c.Listen, err))
		}
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("http.max_body_bytes must not be negative"))
	}
	if c.TasksWindow < 0 {
		errs = append(errs, errors.New("http.tasks_window must not be negative"))
	}
	if c.TasksPerCaller < 0 {
		errs = append(errs, errors.New("http.tasks_per_caller must not be negative"))
	}
	if c.TasksMax < 0 {
		errs = append(errs, errors.New("http.tasks_max must not be negative"))
	}
	return errors.Join(errs...)
}

// HTTPKeysDir is the folder of the http section's keys for cfg ("" when
// there is none: no listener and no folder named).
func (c *Config) HTTPKeysDir() string {
	switch {
	case c.HTTP.Keys != "":
		return c.Path(c.HTTP.Keys)
	case c.NATS.URL == "" && c.NATS.DataDir != "":
		return filepath.Join(c.Path(c.NATS.DataDir), "http")
	}
	return ""
}

// BearerKeeper opens the token key of cfg's http section (creating it when
// missing) with the revoked tokens of the config applied: what serve
// checks tokens with and 'tollgate agent token' mints them with.
func (c *Config) BearerKeeper() (*bearer.Keeper, error) {
	dir := c.HTTPKeysDir()
	if dir == "" {
		return nil, errors.New("http.keys: no folder for the token key (set http.keys, or use the embedded server's data_dir)")
	}
	key, err := bearer.LoadOrCreateKey(filepath.Join(dir, "bearer.key"))
	if err != nil {
		return nil, err
	}
	k, err := bearer.New(key)
	if err != nil {
		return nil, err
	}
	k.SetRevoked(c.HTTP.RevokedTokens)
	return k, nil
}

// ingressKey reads (or creates) the nkey the ingress signs with.
func ingressKey(dir string) (nkeys.KeyPair, error) {
	path := filepath.Join(dir, "ingress.nk")
	if kp, err := broker.LoadSeed(path); err == nil {
		return kp, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("ingress key: %w", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("ingress key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("ingress key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ingress key: %w", err)
	}
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("ingress key: %w", err)
	}
	return kp, nil
}

// httpServer is the agents' HTTP listener (http.listen): the A2A ingress
// and whatever else is mounted on its mux (HandleHTTP).
type httpServer struct {
	srv *http.Server
	ln  net.Listener
	mux *http.ServeMux
}

// startHTTP loads the http section's keys and, with http.listen set,
// listens at once (an address in use is an error of Start) and serves in
// the background. Handlers are mounted with HandleHTTP.
func (g *Gateway) startHTTP() error {
	hc := g.cfg.HTTP
	if hc.Listen == "" && hc.Keys == "" {
		return nil
	}
	var err error
	if g.bearer, err = g.cfg.BearerKeeper(); err != nil {
		return err
	}
	if g.ingressKey, err = ingressKey(g.cfg.HTTPKeysDir()); err != nil {
		return err
	}
	pub, err := g.ingressKey.PublicKey()
	if err != nil {
		return fmt.Errorf("ingress key: %w", err)
	}
	if g.registry.Ingress, err = broker.ParsePublicKey(pub); err != nil {
		return fmt.Errorf("ingress key: %w", err)
	}
	if hc.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", hc.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", hc.Listen, err)
	}
	mux := http.NewServeMux()
	g.http = &httpServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, mux: mux}
	go func() {
		if err := g.http.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("http listener", "err", err)
		}
	}()
	g.log.Info("http listening", "addr", ln.Addr().String())
	return nil
}

// mountA2A serves the A2A ingress (broker/a2ahttp) on the HTTP listener,
// at "/": the least specific pattern, so handlers mounted at their own
// prefixes (HandleHTTP("/v1/", ...)) take precedence over agent ids. Its
// task list is rebuilt from the ledger in the background.
func (g *Gateway) mountA2A(ctx context.Context) error {
	if g.http == nil {
		return nil
	}
	ing, err := ingress.New(ingress.Config{Conn: g.nc, JetStream: g.js, Subjects: g.subjects, Key: g.ingressKey, Ledger: g.ledger, Logger: g.log})
	if err != nil {
		return err
	}
	public := g.cfg.HTTP.PublicURL
	if public == "" {
		public = "http://" + g.http.ln.Addr().String()
	}
	natsURL := g.cfg.NATS.URL
	if natsURL == "" && g.emb != nil {
		natsURL = g.emb.ClientURL()
	}
	srv, err := a2ahttp.New(a2ahttp.Config{
		Ingress: ing, Auth: g.Authenticator(), Directory: g.directory, PublicURL: public, NATSURL: natsURL,
		Cards: g.cards, MaxBodyBytes: g.cfg.HTTP.MaxBodyBytes, Timeout: g.cfg.HTTP.CallTimeout, Logger: g.log,
		Ledger: g.ledger, TaskList: a2ahttp.TaskListConfig{Window: g.cfg.HTTP.TasksWindow, PerCaller: g.cfg.HTTP.TasksPerCaller, MaxTasks: g.cfg.HTTP.TasksMax},
	})
	if err != nil {
		return err
	}
	srv.Start(ctx)
	g.ingress = ing
	g.a2a = srv
	g.http.mux.Handle("/", srv)
	return nil
}

// directory returns the identities in force (safe from any goroutine).
func (g *Gateway) directory() *broker.Directory { return g.dir.Load() }

// cards returns the card an agent's bridge fetched from its A2A server.
func (g *Gateway) cards(agent string) *a2a.AgentCard {
	g.cardMu.RLock()
	defer g.cardMu.RUnlock()
	return g.cardOf[agent]
}

// SetAgentCard sets the card the ingress serves for agent (rewritten to
// point at the gateway); bridges set their server's.
func (g *Gateway) SetAgentCard(agent string, card *a2a.AgentCard) {
	g.cardMu.Lock()
	defer g.cardMu.Unlock()
	if g.cardOf == nil {
		g.cardOf = map[string]*a2a.AgentCard{}
	}
	g.cardOf[agent] = card
}

// Ingress submits hops on behalf of HTTP callers the gateway
// authenticated (the A2A ingress uses it; so can the model and tool
// gateways); nil without an HTTP listener.
func (g *Gateway) Ingress() *ingress.Ingress { return g.ingress }

// A2A is the A2A ingress handler; nil without an HTTP listener.
func (g *Gateway) A2A() *a2ahttp.Server { return g.a2a }

// HTTPAddr is the HTTP listener's address; "" without one.
func (g *Gateway) HTTPAddr() string {
	if g.http == nil {
		return ""
	}
	return g.http.ln.Addr().String()
}

// HandleHTTP mounts h on the HTTP listener's mux at pattern (an
// http.ServeMux pattern, e.g. "/v1/" for a model gateway). It does nothing
// without an HTTP listener.
func (g *Gateway) HandleHTTP(pattern string, h http.Handler) {
	if g.http != nil {
		g.http.mux.Handle(pattern, h)
	}
}

// Bearer returns the keeper of the bearer tokens HTTP callers present;
// nil without an http section.
func (g *Gateway) Bearer() *bearer.Keeper { return g.bearer }

// Authenticator authenticates HTTP callers by their bearer token against
// the identities in force; nil without an http section.
func (g *Gateway) Authenticator() *bearer.Authenticator {
	if g.bearer == nil {
		return nil
	}
	return &bearer.Authenticator{Keeper: g.bearer, Directory: g.directory}
}

// IngressNKey is the ingress key's nkey public key ("U..."); "" without
// an http section.
func (g *Gateway) IngressNKey() string {
	if g.ingressKey == nil {
		return ""
	}
	pub, _ := g.ingressKey.PublicKey()
	return pub
}

// IngressPublicKey is the key the ingress signs its submissions with; nil
// without an http section.
func (g *Gateway) IngressPublicKey() ed25519.PublicKey { return g.registry.Ingress }
