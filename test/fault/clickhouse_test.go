package fault_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tollgate/tollgate/broker/brokertest"
)

// clickhouseServer is a ClickHouse server of the test's own, started by
// deploy/clickhouse/clickhouse.sh in a folder and on ports of its own (never
// the server other tests share).
type clickhouseServer struct {
	t   *testing.T
	env []string
	dsn string
}

func startClickHouse(t *testing.T) *clickhouseServer {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "clickhouse", "clickhouse.sh"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clickhouseServer{t: t, env: append(os.Environ(),
		"TOLLGATE_CLICKHOUSE_DIR="+filepath.Join(t.TempDir(), "clickhouse"),
		fmt.Sprintf("TOLLGATE_CLICKHOUSE_PORT=%d", brokertest.FreePort(t)),
		fmt.Sprintf("TOLLGATE_CLICKHOUSE_HTTP_PORT=%d", brokertest.FreePort(t)),
		"TOLLGATE_CLICKHOUSE_WAIT=120",
	)}
	c.env = append(c.env, "CLICKHOUSE_SCRIPT="+script)
	line := c.run("start")
	dsn, ok := strings.CutPrefix(strings.TrimSpace(line), "export TOLLGATE_CLICKHOUSE_DSN=")
	if !ok {
		t.Fatalf("clickhouse.sh start printed %q", line)
	}
	c.dsn = dsn
	t.Cleanup(func() { c.run("stop") })
	return c
}

// run runs the script with a command and returns its stdout.
func (c *clickhouseServer) run(cmd string) string {
	c.t.Helper()
	var script string
	for _, e := range c.env {
		if v, ok := strings.CutPrefix(e, "CLICKHOUSE_SCRIPT="); ok {
			script = v
		}
	}
	x := exec.Command("bash", script, cmd)
	x.Env = c.env
	var stderr syncBuffer
	x.Stderr = &stderr
	out, err := x.Output()
	if err != nil {
		c.t.Fatalf("clickhouse.sh %s: %v\n%s", cmd, err, stderr.String())
	}
	return string(out)
}

func (c *clickhouseServer) conn() driver.Conn {
	c.t.Helper()
	opts, err := clickhouse.ParseDSN(c.dsn)
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return conn
}

// TestClickHouseDown: ClickHouse is stopped under load and started again.
// Governance is unaffected (every run completes, the books balance), and
// the projector catches up: the hops and tokens in ClickHouse are exactly
// the ledger's.
func TestClickHouseDown(t *testing.T) {
	c := sizes()
	ch := startClickHouse(t)
	s := start(t, options{external: true, clickhouse: ch.dsn})
	l := startLoad(s, c.workers)
	time.Sleep(2 * time.Second)
	down := 10 * time.Second
	if *flagFull {
		down = time.Minute
	}
	ch.run("stop")
	before := l.count()
	time.Sleep(down)
	t.Logf("ClickHouse was down for %s: %d runs started meanwhile", down, l.count()-before)
	ch.run("start")
	time.Sleep(2 * time.Second)
	tl := account(t, s, fmt.Sprintf("ClickHouse stopped for %s under load", down), 0, 0, l.finish())
	tl.assertAllCompleted(t)

	conn := ch.conn()
	var hops, tokens int64
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := conn.QueryRow(ctx, "SELECT toInt64(count()), toInt64(sum(tokens)) FROM tollgate.hops FINAL WHERE decision = 'allowed'").Scan(&hops, &tokens)
		cancel()
		if err == nil && hops == int64(tl.delivered) && tokens == int64(tl.completed*runTokens) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse holds %d allowed hops and %d tokens (err %v); the ledger %d hops and %d tokens", hops, tokens, err, tl.delivered, tl.completed*runTokens)
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("ClickHouse caught up: %d hops, %d tokens, exactly the ledger's\n", hops, tokens)
}
