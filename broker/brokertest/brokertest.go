// Package brokertest starts real, throwaway NATS JetStream servers for tests:
// one per test, on a random port, with its store in the test's temp folder,
// and the Tollgate streams provisioned. It is to broker what httptest is to
// net/http.
//
// It also holds the helpers every test package shares: Eventually and
// WaitFor poll with a deadline instead of sleeping, and Golden compares
// output with testdata/ (rewritten with -update).
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
)

// Bus is an embedded server with the Tollgate streams and a privileged
// connection to it.
type Bus struct {
	Server   *broker.Embedded
	Subjects broker.Subjects
	// Conn and JS are the privileged (gateway) connection.
	Conn *nats.Conn
	JS   jetstream.JetStream
	// GatewayKey is the gateway's nkey; the server knows it as unrestricted.
	GatewayKey string

	t       testing.TB
	dataDir string
	opts    Options
	gwKey   nkeysPair
}

// Options shape the server of a test.
type Options struct {
	// Layout lists the identities and operators that may connect, each in
	// an account of its own, as serve lays the bus out; the gateway's own
	// key is added to it. With an empty layout and Open false, only the
	// gateway can connect.
	Layout broker.Layout
	// Open starts the server without authentication.
	Open bool
	// Streams tunes the provisioned streams.
	Streams broker.StreamOptions
}

// Start starts a server for t, provisions the streams and connects as the
// gateway. Everything is torn down when the test ends.
func Start(t testing.TB, opts Options) *Bus {
	t.Helper()
	b := &Bus{Subjects: broker.DefaultSubjects(), t: t, dataDir: t.TempDir(), opts: opts}
	b.start()
	return b
}

func (b *Bus) start() {
	t := b.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var accounts string
	var gw nkeysPair
	if !b.opts.Open {
		gw = mustKey(t)
		b.GatewayKey, b.gwKey = gw.pub, gw
		layout := b.opts.Layout
		layout.GatewayKeys = append([]string{gw.pub}, layout.GatewayKeys...)
		accounts = b.Subjects.AccountsConfig(layout)
	}
	srv, err := broker.StartEmbedded(ctx, broker.EmbeddedConfig{DataDir: b.dataDir, Port: -1, Accounts: accounts})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	b.Server = srv
	cc := broker.ConnectConfig{URL: srv.ClientURL(), Name: "gateway-test"}
	if gw.kp != nil {
		cc.Key = gw.kp
	}
	nc, err := broker.Connect(cc)
	if err != nil {
		srv.Shutdown()
		t.Fatalf("connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Provision(ctx, js, b.Subjects, b.opts.Streams); err != nil {
		t.Fatalf("provision: %v", err)
	}
	b.Conn, b.JS = nc, js
	t.Cleanup(func() {
		nc.Close()
		srv.Shutdown()
	})
}

// NewConn opens another privileged (gateway) connection, as a second
// gateway process would have; it is closed when the test ends.
func (b *Bus) NewConn() (*nats.Conn, jetstream.JetStream) {
	b.t.Helper()
	cc := broker.ConnectConfig{URL: b.Server.ClientURL(), Name: "gateway-test-2"}
	if b.gwKey.kp != nil {
		cc.Key = b.gwKey.kp
	}
	nc, err := broker.Connect(cc)
	if err != nil {
		b.t.Fatalf("connect: %v", err)
	}
	b.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.t.Fatal(err)
	}
	return nc, js
}
