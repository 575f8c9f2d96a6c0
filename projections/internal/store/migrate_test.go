package store

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitStatements(t *testing.T) {
	src := `-- a comment
CREATE TABLE {db}.a
(
    x UInt8 -- trailing
);

  -- another
SELECT 1;
SELECT 2`
	got := SplitStatements(src)
	want := []string{"CREATE TABLE {db}.a\n(\n    x UInt8 -- trailing\n)", "SELECT 1", "SELECT 2"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestMigrationsAreOrderedAndRepeatable(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("migration %d has version %d: versions must run 1, 2, 3 ...", i, m.Version)
		}
		for _, stmt := range m.Statements {
			if !strings.Contains(stmt, "IF NOT EXISTS") {
				t.Errorf("migration %04d_%s: statement is not safe to repeat:\n%s", m.Version, m.Name, stmt)
			}
			if !strings.Contains(stmt, "{db}.") {
				t.Errorf("migration %04d_%s: statement does not qualify its tables with {db}:\n%s", m.Version, m.Name, stmt)
			}
		}
	}
}

func TestCheckDatabase(t *testing.T) {
	for name, ok := range map[string]bool{"tollgate": true, "t_1": true, "_x": true, "1x": false, "a-b": false,
		"a`b": false, "": false, strings.Repeat("a", 65): false} {
		if err := CheckDatabase(name); (err == nil) != ok {
			t.Errorf("CheckDatabase(%q) = %v", name, err)
		}
	}
}
