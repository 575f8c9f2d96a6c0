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
	// URL does: its nats.url (with its credentials), else its data folder.
	Config *Config
	// SubjectPrefix and StreamPrefix are the gateway's names (empty: the
	// defaults).
	SubjectPrefix, StreamPrefix string
}

// resolved fills what Config says and the fields leave open, and checks
// that exactly one place is named (ErrNoSource, ErrTwoSources).
func (s Source) resolved() (Source, error) {
	if cfg := s.Config; cfg != nil && s.DataDir == "" && s.URL == "" {
		if cfg.NATS.URL != "" {
			s.URL, s.Creds = cfg.NATS.URL, cfg.Path(cfg.NATS.Credentials)
		} else {
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

// OpenLedger connects to the ledger src names. A data folder is opened with
// OpenDataDir: an embedded server on its store, in-process only, after
// taking the folder's lock; nothing is created or provisioned there. A
// missing ledger stream is ErrNoLedgerStream.
func OpenLedger(ctx context.Context, src Source) (_ *LedgerConn, err error) {
	src, err = src.resolved()
	if err != nil {
		return nil, err
	}
	subjects, err := broker.NewSubjects(src.SubjectPrefix, src.StreamPrefix)
	if err != nil {
		return nil, err
	}
	c := &LedgerConn{Subjects: subjects, Where: src.Where()}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	var nc *nats.Conn
	var js jetstream.JetStream
	if src.DataDir != "" {
		c.DataDir = src.DataDir
		var closeStore func()
		if nc, closeStore, err = OpenDataDir(ctx, src.DataDir, subjects); err != nil {
			return nil, err
		}
		c.closers = append(c.closers, closeStore)
		// The gateway account's own JetStream API.
		if js, err = jetstream.New(nc); err != nil {
			return nil, fmt.Errorf("ledger at %s: %w", c.Where, err)
		}
	} else {
		cc := broker.ConnectConfig{URL: src.URL, Name: "tollgate replay", Options: []nats.Option{nats.MaxReconnects(2)}}
		if src.Creds != "" {
			if cc.Key, err = broker.LoadSeed(src.Creds); err != nil {
				return nil, err
			}
		}
		if nc, err = broker.Connect(cc); err != nil {
			return nil, err
		}
		c.closers = append(c.closers, nc.Close)
		// An operator's account imports the ledger's read API under the
		// gateway's API prefix.
		if js, err = jetstream.NewWithAPIPrefix(nc, subjects.JSAPIPrefix()); err != nil {
			return nil, fmt.Errorf("ledger at %s: %w", c.Where, err)
		}
	}
	name := subjects.Stream(broker.StreamLedger)
	if c.Stream, err = js.Stream(ctx, name); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, &explained{err: ErrNoLedgerStream, msg: fmt.Sprintf(
				"there is no %s stream at %s: not a Tollgate gateway's store, or another stream prefix (--stream-prefix)", name, c.Where)}
		}
		return nil, fmt.Errorf("ledger stream %s at %s: %w", name, c.Where, err)
	}
	c.Ledger, c.JS = ledger.New(js, name, subjects), js
	return c, nil
}
