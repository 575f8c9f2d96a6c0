// Package store is the ClickHouse side of the projections: the connection,
// the versioned migrations, and batched inserts with explicit column lists.
// It speaks only what ClickHouse 18.16 and current releases both accept:
// the native protocol, PrepareBatch inserts, qualified table names.
package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ErrDatabaseName means a database name is not a plain identifier.
var ErrDatabaseName = errors.New("database name must be letters, digits and '_', not starting with a digit, at most 64 characters")

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// CheckDatabase reports whether name can be used as a database name.
func CheckDatabase(name string) error {
	if !identRe.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrDatabaseName)
	}
	return nil
}

// ParseDSN parses a clickhouse:// DSN and returns its options and the
// database it names (empty when it names none).
func ParseDSN(dsn string) (*clickhouse.Options, string, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("clickhouse dsn: %w", err)
	}
	if opts.Protocol != clickhouse.Native {
		return nil, "", errors.New("clickhouse dsn: only the native protocol (clickhouse://host:9000) is supported; ClickHouse 18.16 refuses the HTTP client")
	}
	return opts, opts.Auth.Database, nil
}

// Store is a connection to ClickHouse and the database the projection
// lives in. It is safe for concurrent use.
type Store struct {
	conn driver.Conn
	db   string
}

// Open connects to the server of dsn for database db (which need not exist
// yet: every statement names its tables in full).
func Open(ctx context.Context, dsn, db string) (*Store, error) {
	if err := CheckDatabase(db); err != nil {
		return nil, err
	}
	opts, _, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	// Connect to the server's default database: the projection's may not
	// exist before Migrate creates it.
	opts.Auth.Database = ""
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 10 * time.Second
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", strings.Join(opts.Addr, ","), err)
	}
	return &Store{conn: conn, db: db}, nil
}

// WithDatabase returns a store on the same connection for another database.
func (s *Store) WithDatabase(db string) (*Store, error) {
	if err := CheckDatabase(db); err != nil {
		return nil, err
	}
	return &Store{conn: s.conn, db: db}, nil
}

// Close closes the connection (shared with stores made by WithDatabase).
func (s *Store) Close() error { return s.conn.Close() }

// Database returns the store's database.
func (s *Store) Database() string { return s.db }

// ServerVersion returns the server's version, e.g. "18.16.1".
func (s *Store) ServerVersion() (string, error) {
	v, err := s.conn.ServerVersion()
	if err != nil {
		return "", fmt.Errorf("clickhouse server version: %w", err)
	}
	return fmt.Sprintf("%d.%d.%d", v.Version.Major, v.Version.Minor, v.Version.Patch), nil
}

// SQL replaces {db} in a statement with the store's database, quoted.
func (s *Store) SQL(q string) string { return expand(q, s.db) }

func expand(q, db string) string { return strings.ReplaceAll(q, "{db}", "`"+db+"`") }

// Exec runs one statement ({db} expanded) that returns no rows.
func (s *Store) Exec(ctx context.Context, q string, args ...any) error {
	if err := s.conn.Exec(ctx, s.SQL(q), args...); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// Query runs a query ({db} expanded). Arguments bind to ? placeholders on
// the client side, which works on every server version.
func (s *Store) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	rows, err := s.conn.Query(ctx, s.SQL(q), args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	return rows, nil
}

// QueryRow runs a query that returns one row and scans it into dest.
func (s *Store) QueryRow(ctx context.Context, q string, dest []any, args ...any) error {
	if err := s.conn.QueryRow(ctx, s.SQL(q), args...).Scan(dest...); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// DropDatabase drops db and everything in it, if it exists.
func (s *Store) DropDatabase(ctx context.Context, db string) error {
	if err := CheckDatabase(db); err != nil {
		return err
	}
	return s.Exec(ctx, "DROP DATABASE IF EXISTS "+expand("{db}", db))
}

// Tables returns the MergeTree tables of the store's database (its data,
// not its views), without the migrations table.
func (s *Store) Tables(ctx context.Context) ([]string, error) {
	rows, err := s.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree' AND name != ? ORDER BY name",
		s.db, migrationsTable)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("clickhouse: %w", err)
		}
		out = append(out, name)
	}
	return out, rows.Err()
}
