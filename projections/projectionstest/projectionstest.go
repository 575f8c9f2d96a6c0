// Package projectionstest gives each test a ClickHouse database of its own
// on the real server named by TOLLGATE_CLICKHOUSE_DSN (test/run starts one
// with deploy/clickhouse/clickhouse.sh), and drops it when the test ends.
// Without the variable a test is skipped, except under CI (CI set), where
// a missing ClickHouse fails the test.
package projectionstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tollgate/tollgate/projections"
)

// EnvDSN names the variable that holds the ClickHouse DSN.
const EnvDSN = "TOLLGATE_CLICKHOUSE_DSN"

// DSN returns the ClickHouse DSN of the environment. Without one it skips
// the test, or fails it when CI is set.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		const how = `: start ClickHouse with eval "$(deploy/clickhouse/clickhouse.sh start)" (bash test/run does)`
		if os.Getenv("CI") != "" {
			t.Fatal(EnvDSN + " is not set, and CI needs a real ClickHouse" + how)
		}
		t.Skip(EnvDSN + " is not set" + how)
	}
	return dsn
}

// DB is a test's own database.
type DB struct {
	// Name is the database, tollgate_test_<random>.
	Name string
	// Config is a projections config for it, with a short flush interval.
	Config projections.Config
	// Conn is a connection whose default database is Name, for the
	// test's own queries (the cookbook's unqualified table names).
	Conn driver.Conn
	t    testing.TB
}

// New creates a fresh, empty database for t on the server of DSN(t). The
// database, and the _rebuild and _old ones a rebuild makes, are dropped
// when the test ends.
func New(t testing.TB) *DB {
	t.Helper()
	dsn := DSN(t)
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := "tollgate_test_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := open(t, dsn, "")
	t.Cleanup(func() { admin.Close() })
	if err := admin.Exec(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, db := range []string{name, name + "_rebuild", name + "_old"} {
			if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
				t.Errorf("drop test database %s: %v", db, err)
			}
		}
	})
	conn := open(t, dsn, name)
	t.Cleanup(func() { conn.Close() })
	return &DB{
		Name:   name,
		Config: projections.Config{DSN: dsn, Database: name, FlushInterval: 50 * time.Millisecond, AckWait: 2 * time.Second},
		Conn:   conn,
		t:      t,
	}
}

func open(t testing.TB, dsn, db string) driver.Conn {
	t.Helper()
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	opts.Auth.Database = db
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("clickhouse at %s: %v", dsn, err)
	}
	return conn
}

// Scan runs a query that returns one row and scans it into dest, failing
// the test on error.
func (d *DB) Scan(q string, dest ...any) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Conn.QueryRow(ctx, q).Scan(dest...); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
}

// Count runs a query returning one UInt64 (count(), uniqExact ...).
func (d *DB) Count(q string) uint64 {
	d.t.Helper()
	var n uint64
	d.Scan(q, &n)
	return n
}
