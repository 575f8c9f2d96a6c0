package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
)

// TestExampleConfigLoads keeps deploy/tollgate.example.yaml valid.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := gateway.LoadConfig("../../deploy/tollgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ec := cfg.EnforcerConfig()
	if ec.Agents["research"].InvokeRateLimit.Count != 30 || ec.Workflows["research-brief"].MaxCostUSD != 5 || ec.DefaultTimeout != 45*time.Second || ec.MaxProgressPerHop != 100 {
		t.Fatalf("example config read as %+v", ec)
	}
	files, err := cfg.ReadPolicies()
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(files)
	if err != nil || set.Len() == 0 {
		t.Fatalf("example policies: %d, %v", set.Len(), err)
	}
	dir, err := cfg.Directory()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.NewEngine(set, dir); err != nil {
		t.Fatalf("example entities: %v", err)
	}
}

func TestClickHouseConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg     gateway.ClickHouseConfig
		wantErr string
	}{
		{gateway.ClickHouseConfig{}, ""},
		{gateway.ClickHouseConfig{DSN: "clickhouse://127.0.0.1:9000", BatchSize: 500, FlushInterval: time.Second}, ""},
		{gateway.ClickHouseConfig{BatchSize: 500}, "need a dsn"},
		{gateway.ClickHouseConfig{DSN: "clickhouse://127.0.0.1:9000", Database: "no-dashes"}, "database"},
	} {
		err := tc.cfg.Validate()
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.wantErr)
		}
	}
}

// TestConfigListsEveryProblem: a config file with many mistakes is
// refused with every one of them listed; an unknown key is an error.
func TestConfigListsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	bad := `
nats:
  replicas: 9
agents:
  - id: Bad.Id
  - id: research
    type: robot
  - id: research
users:
  - id: tomas
    public_key: nope
run_limits:
  on_breach: explode
per_agent:
  mode: lenient
http:
  tasks_window: -1h
  tasks_per_caller: -3
  tasks_max: -1
`
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := gateway.LoadConfig(path)
	if err == nil {
		t.Fatal("a config with many mistakes loaded")
	}
	for _, want := range []string{"replicas is 9", `"Bad.Id" is not a valid id`, `type "robot"`, "registered twice", "nkey user public key",
		"policies: at least one", "on_breach", "mode is \"lenient\"", "public_key is required",
		"http.tasks_window must not be negative", "http.tasks_per_caller must not be negative",
		"http.tasks_max must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := os.WriteFile(path, []byte("nats:\n  urll: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.LoadConfig(path); err == nil || !strings.Contains(err.Error(), "urll") {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestStreamHoldBytesValidated: guardrails.stream_hold_bytes is bounded.
func TestStreamHoldBytesValidated(t *testing.T) {
	for _, tc := range []struct {
		hold    int
		wantErr bool
	}{{0, false}, {128, false}, {65536, false}, {-1, true}, {65537, true}} {
		c := gateway.GuardrailsConfig{StreamHoldBytes: tc.hold}
		err := c.Validate()
		if (err != nil) != tc.wantErr || err != nil && !strings.Contains(err.Error(), "stream_hold_bytes") {
			t.Errorf("stream_hold_bytes %d: %v, want error %v", tc.hold, err, tc.wantErr)
		}
	}
}
