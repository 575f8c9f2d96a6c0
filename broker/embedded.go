package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// EmbeddedConfig configures an in-process NATS server with JetStream.
type EmbeddedConfig struct {
	// DataDir is the JetStream store folder. Required.
	DataDir string
	// Host and Port are where the server listens for agents in other
	// processes. Port -1 picks a free port; NoListen serves only in-process
	// connections (the demo does that).
	Host     string
	Port     int
	NoListen bool
	// Users are the nkey users allowed to connect, with their permissions
	// (see Subjects.NkeyUsers). With none, the server accepts anyone: only
	// for tests that do not exercise identity.
	Users []*server.NkeyUser
	// ServerName names the server (required in a cluster).
	ServerName string
	// Cluster, when set, joins the server to a cluster.
	Cluster *ClusterConfig
	// Debug turns the server's own logging on (to stderr).
	Debug bool
	// MaxPayload caps a message at the server; zero keeps the 1 MiB default.
	MaxPayload int32
}

// ClusterConfig places an embedded server in a cluster.
type ClusterConfig struct {
	Name string
	Host string
	Port int
	// Routes lists every node's route URL, this one included.
	Routes []string
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv  *server.Server
	opts *server.Options
}

// StartEmbedded starts a NATS server with JetStream in cfg.DataDir and waits
// until it accepts connections (or ctx ends). In a cluster it does not wait
// for a JetStream meta leader; Provision retries until there is one.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded nats: data dir is required")
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		Host:       cfg.Host,
		Port:       cfg.Port,
		DontListen: cfg.NoListen,
		NoSigs:     true,
		NoLog:      !cfg.Debug,
		Nkeys:      cfg.Users,
		MaxPayload: cfg.MaxPayload,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if c := cfg.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Debug {
		srv.ConfigureLogger()
	}
	go srv.Start()
	deadline := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !srv.ReadyForConnections(deadline) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s", deadline)
	}
	return &Embedded{srv: srv, opts: opts}, nil
}

// ClientURL is the URL agents in other processes connect to; empty when the
// server does not listen.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// SetUsers replaces the nkey users (and so the permissions) of a running
// server, as a config reload does.
func (e *Embedded) SetUsers(users []*server.NkeyUser) error {
	opts := e.opts.Clone()
	opts.Nkeys = users
	if err := e.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("embedded nats: reload users: %w", err)
	}
	e.opts = opts
	return nil
}

// Shutdown stops the server and waits until it is down.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// ConnectConfig says how to reach the bus and as whom.
type ConnectConfig struct {
	// URL of the NATS server; ignored when InProcess is set.
	URL string
	// InProcess connects to an embedded server without a socket.
	InProcess *Embedded
	// Key authenticates the connection (nkey challenge). Nil connects
	// without credentials.
	Key nkeys.KeyPair
	// InboxPrefix, when set, is the prefix of every reply inbox; agents use
	// InboxPrefix(id) because that is all they may subscribe to.
	InboxPrefix string
	// Name is the connection name the server shows.
	Name string
	// ErrorHandler receives asynchronous errors (permission violations).
	ErrorHandler nats.ErrHandler
	// Options are appended last.
	Options []nats.Option
}

// Connect opens a NATS connection as described by cfg. It reconnects
// forever; Close it when done.
func Connect(cfg ConnectConfig) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess.srv))
	}
	if cfg.Key != nil {
		pub, err := cfg.Key.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		opts = append(opts, nats.Nkey(pub, cfg.Key.Sign))
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.ErrorHandler != nil {
		opts = append(opts, nats.ErrorHandler(cfg.ErrorHandler))
	}
	opts = append(opts, cfg.Options...)
	url := cfg.URL
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}
