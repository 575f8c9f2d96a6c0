package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestSigningKeysFromKeyDir reads a key folder: <id>.pub files with
// comments and several keys, <id>.nk seeds, other files ignored; a bad key
// is named by file and line; no keys anywhere is nil.
func TestSigningKeysFromKeyDir(t *testing.T) {
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	old, _ := nkeys.CreateUser()
	oldPub, _ := old.PublicKey()
	seed, _ := kp.Seed()
	for name, body := range map[string]string{
		"research.pub": "# research, newest last\n" + oldPub + "\n\n" + pub + "\n",
		"writer.nk":    string(seed) + "\n",
		"README.md":    "not a key",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := gateway.SigningKeys(nil, dir, "")
	if err != nil || len(keys["research"]) != 2 || len(keys["writer"]) != 1 || len(keys) != 2 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "critic.pub"), []byte("SUAnotakey\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.SigningKeys(nil, dir, ""); err == nil || !strings.Contains(err.Error(), "critic.pub:1") {
		t.Fatalf("a bad key file: %v", err)
	}
	if keys, err := gateway.SigningKeys(nil, "", t.TempDir()); err != nil || keys != nil {
		t.Fatalf("no keys anywhere: %v, %v", keys, err)
	}
}
