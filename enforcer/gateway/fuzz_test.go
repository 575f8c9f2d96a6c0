package gateway

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig feeds the config loader arbitrary YAML: it never panics,
// and a config it accepts validates again and yields a directory. Seeds
// are the shipped example config and the cases under
// testdata/fuzz/FuzzParseConfig.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "tollgate.example.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("agents: [{id: a, public_key: x}]\npolicies: []\n"))
	f.Add([]byte("nats: {url: 'nats://127.0.0.1:4222', ledger_max_bytes: -5}\nrun_limits: {max_depth: -1}\n"))
	f.Add([]byte("per_agent: {invoke_rate_limit: 5/s}\nenforcer: {ack_wait: 1ns}\n"))
	dir := f.TempDir()
	path := filepath.Join(dir, "tollgate.yaml")
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg, err := parseConfig(path, in)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if err := cfg.validate(false); err != nil {
			t.Fatalf("an accepted config does not validate again: %v", err)
		}
		if _, err := cfg.Directory(); err != nil {
			t.Fatalf("an accepted config yields no directory: %v", err)
		}
	})
}
