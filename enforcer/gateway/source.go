package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
)

// Source says where a gateway's ledger is read from, by tools that read
// it while the gateway runs or after it stopped (replay, runs,
// projections): a data folder a gateway left behind, a NATS server, or a
// gateway config that names one of them.
type Source struct {
	// DataDir is a gateway's data folder (demo --data, serve --data). It is
	// opened in-process and read-only (OpenDataDir), and refused while a
	// gateway holds it.
	DataDir string
	// URL is a running gateway's NATS server; Creds, when set, the nkey
	// seed file to connect with: an operator's, whose account imports the
	// ledger's read API under the gateway's JetStream API prefix.
	URL, Creds string
	// Config, when set, says where the ledger is if neither DataDir nor
	// URL does: its nats.url (with its credentials, unless Creds is set);
	// for an embedded gateway, its nats.listen address when Creds is set
	// (an operator reading the running gateway), else its data folder.
	Config *Config
	// SubjectPrefix and StreamPrefix are the gateway's names (empty: the
	// defaults).
	SubjectPrefix, StreamPrefix string
}

// resolved fills what Config says and the fields leave open, and checks
// that exactly one place is named (ErrNoSource, ErrTwoSources).
func (s Source) resolved() (Source, error) {
	if cfg := s.Config; cfg != nil && s.DataDir == "" && s.URL == "" {
		switch {
		case cfg.NATS.URL != "":
			s.URL = cfg.NATS.URL
			if s.Creds == "" {
				s.Creds = cfg.Path(cfg.NATS.Credentials)
			}
		case s.Creds != "" && cfg.NATS.Listen != ListenNone:
			s.URL, _ = cfg.ClientURL()
		default:
			s.DataDir = cfg.Path(cfg.NATS.DataDir)
		}
	}
	switch {
	case s.DataDir != "" && s.URL != "":
		return s, ErrTwoSources
	case s.DataDir == "" && s.URL == "":
		return s, ErrNoSource
	}
	return s, nil
}

// Where names the place the ledger is read from, for people: the data
// folder or the server's URL, once resolved.
func (s Source) Where() string {
	if r, err := s.resolved(); err == nil {
		s = r
	}
	if s.DataDir != "" {
		return s.DataDir
	}
	return s.URL
}

// LedgerConn is an open connection to a gateway's ledger, for reading it.
type LedgerConn struct {
	*ledger.Ledger
	// Subjects are the gateway's names.
	Subjects broker.Subjects
	// Stream is the ledger's stream.
	Stream jetstream.Stream
	// JS is the JetStream API the ledger is read through (the gateway
	// account's, or an operator's imports of it).
	JS jetstream.JetStream
	// DataDir is the data folder read, when the source was one.
	DataDir string
	// Where names the folder or server read, for people.
	Where string

	closers []func()
}

// Close closes the connection and, for a data folder, stops its server and
// releases its lock.
func (c *LedgerConn) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}

// BusConn is a connection to a gateway's bus, for operators' tools: with a
// data folder, the gateway account in-process; over NATS, an operator's
// account (or the gateway's own key).
type BusConn struct {
	// Conn is the connection; JetStream reaches the gateway's streams
	// through it (under the operators' API prefix when the key is an
	// operator's).
	Conn      *nats.Conn
	JetStream jetstream.JetStream
	// Subjects are the gateway's names.
	Subjects broker.Subjects
	// DataDir is the data folder read, when the source was one.
	DataDir string
	// Where names the folder or server read, for people.
	Where string
	// Owner is whose key the connection holds, as the server says (zero
	// for a data folder, or a server that cannot say).
	Owner broker.Owner

	closers []func()
}

// Close closes the connection and, for a data folder, stops its server and
// releases its lock.
func (c *BusConn) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}

// Dial connects to the bus src names. A data folder is opened with
// OpenDataDir: an embedded server on its store, in-process only, after
// taking the folder's lock. Over NATS, a key that is an identity's rather
// than an operator's (or the gateway's) is refused at once with an error
// wrapping broker.ErrWrongKey that names whose key it is.
func Dial(ctx context.Context, src Source) (_ *BusConn, err error) {
	src, err = src.resolved()
	if err != nil {
		return nil, err
	}
	subjects, err := broker.NewSubjects(src.SubjectPrefix, src.StreamPrefix)
	if err != nil {
		return nil, err
	}
	c := &BusConn{Subjects: subjects, Where: src.Where()}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if src.DataDir != "" {
		c.DataDir = src.DataDir
		nc, closeStore, err := OpenDataDir(ctx, src.DataDir, subjects)
		if err != nil {
			return nil, err
		}
		c.Conn = nc
		c.closers = append(c.closers, closeStore)
		// The gateway account's own JetStream API.
		if c.JetStream, err = jetstream.New(nc); err != nil {
			return nil, fmt.Errorf("bus at %s: %w", c.Where, err)
		}
		return c, nil
	}
	cc := broker.ConnectConfig{URL: src.URL, Name: "tollgate cli", Options: []nats.Option{nats.MaxReconnects(2)}}
	if src.Creds != "" {
		if cc.Key, err = broker.LoadSeed(src.Creds); err != nil {
			return nil, err
		}
	}
	if c.Conn, err = broker.Connect(cc); err != nil {
		return nil, err
	}
	c.closers = append(c.closers, c.Conn.Close)
	// Say at once when the key is not an operator's (nor the gateway's
	// own), instead of waiting for a read that cannot be answered.
	owner, err := subjects.WhoAmI(ctx, c.Conn)
	c.Owner = owner
	switch {
	case errors.Is(err, broker.ErrWhoAmIUnavailable):
	case err != nil:
		return nil, err
	case owner.Kind == broker.OwnerGateway:
		// The gateway's own key reaches the streams directly.
		if c.JetStream, err = jetstream.New(c.Conn); err != nil {
			return nil, fmt.Errorf("bus at %s: %w", c.Where, err)
		}
		return c, nil
	case owner.Kind == broker.OwnerIdentity:
		return nil, fmt.Errorf("%w: the key in %s is %s; reading a gateway needs an operator's key (operators in the gateway config)",
			broker.ErrWrongKey, credsName(src.Creds), owner)
	}
	// An operator's account imports the read API under the gateway's API
	// prefix.
	if c.JetStream, err = jetstream.NewWithAPIPrefix(c.Conn, subjects.JSAPIPrefix()); err != nil {
		return nil, fmt.Errorf("bus at %s: %w", c.Where, err)
	}
	return c, nil
}

// OpenLedger connects to the ledger src names (see Dial). A missing ledger
// stream is ErrNoLedgerStream.
func OpenLedger(ctx context.Context, src Source) (_ *LedgerConn, err error) {
	bus, err := Dial(ctx, src)
	if err != nil {
		return nil, err
	}
	c := &LedgerConn{Subjects: bus.Subjects, DataDir: bus.DataDir, Where: bus.Where, closers: []func(){bus.Close}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	name := c.Subjects.Stream(broker.StreamLedger)
	if c.Stream, err = bus.JetStream.Stream(ctx, name); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, &explained{err: ErrNoLedgerStream, msg: fmt.Sprintf(
				"there is no %s stream at %s: not a Tollgate gateway's store, or another stream prefix (--stream-prefix)", name, c.Where)}
		}
		return nil, fmt.Errorf("ledger stream %s at %s: %w", name, c.Where, err)
	}
	c.Ledger, c.JS = ledger.New(bus.JetStream, name, c.Subjects), bus.JetStream
	return c, nil
}

// credsName names a key file for people ("no key" when none was given).
func credsName(path string) string {
	if path == "" {
		return "(no key given)"
	}
	return path
}
