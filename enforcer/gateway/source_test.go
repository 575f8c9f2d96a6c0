package gateway_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestOpenLedgerRefuses: a source must name exactly one place, a data
// folder must hold a store, and a folder in use is not opened twice.
func TestOpenLedgerRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inUse := t.TempDir()
	if err := os.MkdirAll(filepath.Join(inUse, "jetstream"), 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := gateway.LockDataDir(inUse)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	for _, tc := range []struct {
		name string
		src  gateway.Source
		want error
	}{
		{"nothing", gateway.Source{}, gateway.ErrNoSource},
		{"both", gateway.Source{DataDir: t.TempDir(), URL: "nats://127.0.0.1:1"}, gateway.ErrTwoSources},
		{"a config naming an empty folder", gateway.Source{Config: &gateway.Config{NATS: gateway.NATSConfig{DataDir: t.TempDir()}}}, gateway.ErrNoStore},
		{"no store", gateway.Source{DataDir: t.TempDir()}, gateway.ErrNoStore},
		{"in use", gateway.Source{DataDir: inUse}, gateway.ErrDataDirInUse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := gateway.OpenLedger(ctx, tc.src)
			if !errors.Is(err, tc.want) {
				if l != nil {
					l.Close()
				}
				t.Fatalf("OpenLedger(%+v): %v, want %v", tc.src, err, tc.want)
			}
		})
	}
}
