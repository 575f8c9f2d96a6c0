package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
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
	// Accounts is the accounts block of the server config: who may connect
	// and what each account reaches (see Subjects.AccountsConfig). Empty,
	// the server accepts anyone in one account: only for tools that open a
	// data folder in-process and for tests that do not exercise identity.
	Accounts string
	// ServerName names the server (required in a cluster).
	ServerName string
	// Cluster, when set, joins the server to a cluster.
	Cluster *ClusterConfig
	// Debug turns the server's own logging on (to stderr).
	Debug bool
	// Logger, when set (and Debug is off), receives the server's
	// authentication failures, permission violations, warnings and errors.
	Logger *slog.Logger
	// MaxPayload caps a message at the server; zero keeps the 1 MiB default.
	MaxPayload int32
	// SyncAlways makes the file store fsync every write before it is
	// acknowledged: an acknowledged submission then survives a power loss,
	// not only a process kill. Otherwise the store fsyncs every
	// SyncInterval (zero: the server's default, 2 minutes). See
	// docs/reliability.md for what each costs.
	SyncAlways   bool
	SyncInterval time.Duration
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
	srv *server.Server
	cfg EmbeddedConfig
}

// StartEmbedded starts a NATS server with JetStream in cfg.DataDir and waits
// until it accepts connections (or ctx ends). In a cluster it does not wait
// for a JetStream meta leader; Provision retries until there is one.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded nats: data dir is required")
	}
	opts, err := cfg.options(cfg.Accounts)
	if err != nil {
		return nil, err
	}
	// The server only logs a port it cannot listen on and never becomes
	// ready: say so at once, naming the address.
	if !opts.DontListen && opts.Port > 0 {
		if err := probeListen(net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))); err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
	}
	if opts.Cluster.Port > 0 {
		if err := probeListen(net.JoinHostPort(opts.Cluster.Host, strconv.Itoa(opts.Cluster.Port))); err != nil {
			return nil, fmt.Errorf("embedded nats cluster: %w", err)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Debug {
		srv.ConfigureLogger()
	} else if cfg.Logger != nil {
		srv.SetLoggerV2(serverLog{cfg.Logger}, false, false, false)
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
	return &Embedded{srv: srv, cfg: cfg}, nil
}

// probeListen fails when addr cannot be listened on (in use, not local).
func probeListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	return ln.Close()
}

// options builds the server options of cfg with an accounts block. Reload
// builds them again the same way, so that only the accounts differ.
func (cfg EmbeddedConfig) options(accounts string) (*server.Options, error) {
	opts := &server.Options{}
	if accounts != "" {
		if err := opts.ProcessConfigString(accounts); err != nil {
			return nil, fmt.Errorf("embedded nats: accounts: %w", err)
		}
	}
	opts.ServerName = cfg.ServerName
	opts.JetStream, opts.StoreDir = true, cfg.DataDir
	opts.Host, opts.Port, opts.DontListen = cfg.Host, cfg.Port, cfg.NoListen
	opts.NoSigs, opts.NoLog = true, !cfg.Debug
	opts.MaxPayload = cfg.MaxPayload
	opts.SyncAlways, opts.SyncInterval = cfg.SyncAlways, cfg.SyncInterval
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if c := cfg.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	return opts, nil
}

// ClientURL is the URL agents in other processes connect to; empty when the
// server does not listen.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// SetLayout replaces the accounts of a running server with those of a
// layout, as a config reload does: identities added, rotated, disabled or
// removed take effect at once, and the connections of users that are gone
// are closed. Accounts that are new are added in two reloads (see
// Subjects.StagedAccountsConfig).
func (e *Embedded) SetLayout(s Subjects, l Layout) error {
	staged := map[string]bool{}
	for name := range s.AccountNames(l) {
		if _, err := e.srv.LookupAccount(name); err != nil {
			staged[name] = true
		}
	}
	if len(staged) > 0 {
		if err := e.setAccounts(s.StagedAccountsConfig(l, staged)); err != nil {
			return err
		}
	}
	return e.setAccounts(s.AccountsConfig(l))
}

func (e *Embedded) setAccounts(accounts string) error {
	opts, err := e.cfg.options(accounts)
	if err != nil {
		return err
	}
	if e.cfg.Port == -1 && e.srv.Addr() != nil {
		// Keep the port the server picked.
		if addr, ok := e.srv.Addr().(*net.TCPAddr); ok {
			opts.Port = addr.Port
		}
	}
	if err := e.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("embedded nats: reload accounts: %w", err)
	}
	e.cfg.Accounts = accounts
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
