package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/projections/projectionstest"
)

// proxy forwards a local port to ClickHouse once opened: until then the
// port refuses connections, as a ClickHouse that is down does.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), target: target}
	ln.Close()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ln != nil {
			p.ln.Close()
		}
	})
	return p
}

func (p *proxy) open(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", p.target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c) }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
}

// TestProjectorRetriesUntilClickHouse: with ClickHouse down, the gateway
// starts and governs; /readyz stays ready and reports the projector
// retrying; once ClickHouse is reachable the projector catches up.
func TestProjectorRetriesUntilClickHouse(t *testing.T) {
	db := projectionstest.New(t)
	u, err := url.Parse(db.Config.DSN)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	c := newCast(t, gateway.IdentityConfig{ID: "tomas", Type: "user"}, gateway.IdentityConfig{ID: "orchestrator", Tags: []string{"entry"}})
	c.cfg.Admin.Listen = "127.0.0.1:0"
	c.cfg.ClickHouse = gateway.ClickHouseConfig{DSN: "clickhouse://" + px.addr, Database: db.Name, FlushInterval: 100 * time.Millisecond}
	g := start(t, c)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	orch, err := agent.Connect(ctx, agent.Config{ID: "orchestrator", Key: c.keys["orchestrator"], URL: g.Embedded().ClientURL(),
		Handler: func(ctx context.Context, t *agent.Task) (*agent.Result, error) { return &agent.Result{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer orch.Close()
	tomas, err := agent.Connect(ctx, agent.Config{ID: "tomas", Key: c.keys["tomas"], URL: g.Embedded().ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer tomas.Close()
	reply, err := tomas.Start(ctx, "orchestrator", agent.UserText("go"))
	if err != nil {
		t.Fatalf("the gateway does not govern while ClickHouse is down: %v", err)
	}

	readyz := func() gateway.Readiness {
		resp, err := http.Get("http://" + g.AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r gateway.Readiness
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	brokertest.Eventually(t, 20*time.Second, "readyz reports the projector retrying", func() bool {
		r := readyz()
		return r.Ready && r.Projector != nil && r.Projector.State == "retrying" && strings.Contains(r.Projector.LastError, px.addr)
	})

	px.open(t)
	brokertest.Eventually(t, 60*time.Second, "the projector catches up", func() bool {
		var n uint64
		err := db.Conn.QueryRow(ctx, "SELECT count() FROM hops WHERE run_id = ?", reply.RunID).Scan(&n)
		return err == nil && n == 1
	})
	if r := readyz(); r.Projector == nil || r.Projector.State != "running" || r.Projector.Restarts == 0 {
		t.Fatalf("readyz after recovery: %+v", r.Projector)
	}
}
