package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/projections/projectionstest"
)

// TestAgentLifecycleCommands: list, show, disable, enable, rotate and
// remove edit the config file, keep its comments, and refuse edits that
// would make it invalid; a refused add leaves no key file behind.
func TestAgentLifecycleCommands(t *testing.T) {
	dir, config := writeGatewayConfig(t)
	keys := filepath.Join(dir, "keys")
	ctx := context.Background()
	b, _ := os.ReadFile(config)
	if err := os.WriteFile(config, append([]byte("# the platform team's gateway\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := tollgate(t, ctx, append(args, "--config", config)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out
	}
	entries := func() map[string]gateway.IdentityEntry {
		t.Helper()
		var list []gateway.IdentityEntry
		if err := json.Unmarshal([]byte(run("agent", "list", "--json")), &list); err != nil {
			t.Fatal(err)
		}
		m := map[string]gateway.IdentityEntry{}
		for _, e := range list {
			m[e.ID] = e
		}
		return m
	}
	if e := entries(); len(e) != 4 || e["ops"].Type != "operator" || e["research"].Team != "research" {
		t.Fatalf("list: %+v", e)
	}
	if out := run("agent", "list"); !strings.HasPrefix(out, "ID") || !strings.Contains(out, "orchestrator") {
		t.Fatalf("list table:\n%s", out)
	}
	run("agent", "disable", "research")
	if !entries()["research"].Disabled {
		t.Fatal("research not disabled")
	}
	if out := run("agent", "show", "research"); !strings.Contains(out, "disabled") {
		t.Fatalf("show:\n%s", out)
	}
	run("agent", "enable", "research")
	if entries()["research"].Disabled {
		t.Fatal("research still disabled")
	}
	before := entries()["research"].PublicKey
	run("agent", "rotate", "research", "--keys", keys)
	if after := entries()["research"].PublicKey; after == before || after == "" {
		t.Fatalf("rotate kept the key %s", after)
	}
	if _, err := os.Stat(filepath.Join(keys, "research.nk.old")); err != nil {
		t.Fatalf("old key not kept: %v", err)
	}
	run("agent", "remove", "research")
	if _, ok := entries()["research"]; ok {
		t.Fatal("research not removed")
	}
	if b, _ := os.ReadFile(config); !strings.Contains(string(b), "# the platform team's gateway") {
		t.Fatalf("the comment was lost:\n%s", b)
	}
	// Operators are removed, not disabled; unknown ids are named.
	if _, _, err := tollgate(t, ctx, "agent", "disable", "ops", "--config", config); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("disable an operator: %v", err)
	}
	if _, _, err := tollgate(t, ctx, "agent", "show", "nobody", "--config", config); err == nil || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("show nobody: %v", err)
	}
	// An add the config refuses writes no key file.
	if _, _, err := tollgate(t, ctx, "agent", "add", "tomas", "--keys", filepath.Join(dir, "k2"), "--config", config); err == nil {
		t.Fatal("tomas added twice")
	}
	if _, err := os.Stat(filepath.Join(dir, "k2", "tomas.nk")); !os.IsNotExist(err) {
		t.Fatalf("a refused add left a key file: %v", err)
	}
}

// TestConfigValidate: every problem at once, with line numbers: unknown
// keys, type errors, a key shared by two identities, a missing key, and a
// Cedar syntax error shown with its line and a caret.
func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	const pub = "UALCDFPHMJAIPBSAQYUVYGJD7BG2RXJMM547LXG6XHLGBMMASV2646JZ"
	config := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(config, []byte(`nats:
  listen: 127.0.0.1:4999
  bogus: 1
agents:
  - id: a1
    public_key: `+pub+`
  - id: a2
    public_key: `+pub+`
    timeout_seconds: "abc"
users:
  - id: u1
policies: [p.cedar]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := tollgate(t, context.Background(), "config", "validate", config)
	if err == nil {
		t.Fatal("a bad config validated")
	}
	for _, want := range []string{"4 problems", "line 3: field bogus not found", "line 9: cannot unmarshal", `line 11: user "u1": public_key is required`,
		`line 7: agents "a2": public_key ` + pub + ` is also agents "a1"'s`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validate lacks %q:\n%v", want, err)
		}
	}
	good := strings.NewReplacer("  bogus: 1\n", "", `    timeout_seconds: "abc"`+"\n", "", "  - id: u1\n", "  - id: u1\n    disabled: true\n",
		"  - id: a2\n    public_key: "+pub, "  - id: a2\n    disabled: true").Replace(string(mustRead(t, config)))
	if err := os.WriteFile(config, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte("permit (principal, action, resource)\n  when { principal.foo == };\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = tollgate(t, context.Background(), "config", "validate", config)
	if err == nil || !strings.Contains(err.Error(), "2 |   when { principal.foo == };\n      |                            ^") {
		t.Fatalf("a Cedar syntax error without its line and caret:\n%v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte("permit (principal, action, resource);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := tollgate(t, context.Background(), "config", "validate", config); err != nil || !strings.Contains(out, "is valid") {
		t.Fatalf("a good config: %v %s", err, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDemoClickHouseOwnDatabase: demo --clickhouse writes into a database
// of its own (--database, default tollgate_demo), never the DSN's.
func TestDemoClickHouseOwnDatabase(t *testing.T) {
	db := projectionstest.New(t)
	out, errOut, err := tollgate(t, context.Background(), "demo", "--clickhouse", db.Config.DSN+"/tollgate", "--database", db.Name)
	if err != nil || !strings.Contains(out, "From ClickHouse (database "+db.Name+")") {
		t.Fatalf("demo --clickhouse: %v\n%s%s", err, out, errOut)
	}
	if f := newDemoCmd().Flags().Lookup("database"); f == nil || f.DefValue != "tollgate_demo" {
		t.Fatalf("demo --database default: %+v", f)
	}
}

// TestCompletionAndVersion: shells complete run ids from the ledger the
// flags name and identity ids from the config; --version answers.
func TestCompletionAndVersion(t *testing.T) {
	dir, run := keptDemo(t)
	out, _, err := tollgate(t, context.Background(), "__complete", "replay", "--data", dir, "")
	if err != nil || !strings.Contains(out, run+"\t") {
		t.Fatalf("run ids: %v\n%s", err, out)
	}
	_, config := writeGatewayConfig(t)
	out, _, err = tollgate(t, context.Background(), "__complete", "agent", "disable", "--config", config, "")
	if err != nil || !strings.Contains(out, "research\tagent") || !strings.Contains(out, "ops\toperator") {
		t.Fatalf("identity ids: %v\n%s", err, out)
	}
	out, _, err = tollgate(t, context.Background(), "--version")
	if err != nil || !strings.HasPrefix(out, "tollgate version ") {
		t.Fatalf("--version: %v %q", err, out)
	}
}
