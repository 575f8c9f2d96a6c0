package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationsTable records which migrations a database has.
const migrationsTable = "schema_migrations"

// ErrSchemaNewer means the database has migrations this build does not
// know: a newer Tollgate migrated it.
var ErrSchemaNewer = errors.New("the database schema is newer than this build of tollgate")

// Migration is one versioned step of the schema: a file
// migrations/NNNN_name.sql whose statements all use IF NOT EXISTS (or are
// otherwise safe to repeat), so that a migration interrupted half way, or
// run by two processes at once, is simply run again.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations returns every migration of this build in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		src, err := fs.ReadFile(migrationFiles, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, Statements: SplitStatements(string(src))})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %d_%s and %d_%s share a version", out[i].Version, out[i].Name, out[i-1].Version, out[i-1].Name)
		}
	}
	return out, nil
}

// SplitStatements splits SQL text into statements: whole-line "--"
// comments are dropped and a statement ends with a line ending in ";".
func SplitStatements(src string) []string {
	var out, cur []string
	flush := func() {
		if stmt := strings.TrimSpace(strings.Join(cur, "\n")); stmt != "" {
			out = append(out, stmt)
		}
		cur = nil
	}
	for line := range strings.Lines(src) {
		line = strings.TrimRight(line, " \t\r\n")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		body, end := strings.CutSuffix(line, ";")
		cur = append(cur, body)
		if end {
			flush()
		}
	}
	flush()
	return out
}

// addColumn matches the one form of ALTER the migrations use,
// "ALTER TABLE {db}.<table> ADD COLUMN IF NOT EXISTS <column> <type>".
// ClickHouse 18.16 does not know IF NOT EXISTS there; execMigration checks
// for the column itself.
var addColumn = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+\{db\}\.(\w+)\s+ADD\s+COLUMN\s+IF\s+NOT\s+EXISTS\s+(\w+)\s+(.+)$`)

// execMigration runs one statement of a migration, an ADD COLUMN IF NOT
// EXISTS as the oldest supported server can.
func (s *Store) execMigration(ctx context.Context, stmt string) error {
	m := addColumn.FindStringSubmatch(stmt)
	if m == nil {
		return s.Exec(ctx, stmt)
	}
	table, column, typ := m[1], m[2], m[3]
	var n uint64
	if err := s.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
		[]any{&n}, s.db, table, column); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	return s.Exec(ctx, "ALTER TABLE {db}."+table+" ADD COLUMN "+column+" "+typ)
}

// SchemaVersion returns the highest migration applied to the database, 0
// when it has none (or does not exist).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var exists uint8
	if err := s.QueryRow(ctx, "SELECT toUInt8(count() > 0) FROM system.tables WHERE database = ? AND name = ?",
		[]any{&exists}, s.db, migrationsTable); err != nil {
		return 0, err
	}
	if exists == 0 {
		return 0, nil
	}
	var v uint32
	if err := s.QueryRow(ctx, "SELECT max(version) FROM {db}."+migrationsTable, []any{&v}); err != nil {
		return 0, err
	}
	return int(v), nil
}

// Migrate creates the database when missing and applies the migrations it
// lacks, in order. It returns the migrations it applied.
func (s *Store) Migrate(ctx context.Context) ([]Migration, error) {
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	if err := s.Exec(ctx, "CREATE DATABASE IF NOT EXISTS {db}"); err != nil {
		return nil, fmt.Errorf("create database %s: %w", s.db, err)
	}
	if err := s.Exec(ctx, `CREATE TABLE IF NOT EXISTS {db}.`+migrationsTable+` (
    version    UInt32,
    name       String,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY version`); err != nil {
		return nil, fmt.Errorf("create %s.%s: %w", s.db, migrationsTable, err)
	}
	have, err := s.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	if last := all[len(all)-1].Version; have > last {
		return nil, fmt.Errorf("database %s is at migration %d, this build knows up to %d: %w", s.db, have, last, ErrSchemaNewer)
	}
	var applied []Migration
	for _, m := range all {
		if m.Version <= have {
			continue
		}
		for i, stmt := range m.Statements {
			if err := s.execMigration(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		b, err := s.conn.PrepareBatch(ctx, s.SQL("INSERT INTO {db}."+migrationsTable+" (version, name, applied_at)"))
		if err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		if err := b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		if err := b.Send(); err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		applied = append(applied, m)
	}
	return applied, nil
}
