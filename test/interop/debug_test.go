package interop

import (
	"context"
	"testing"
	"time"
)

func dumpRuns(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.g.Ledger().ScanAll(ctx, time.Time{}, func(run string, raw []byte, seq uint64) error {
		t.Logf("%s %d %.300s", run, seq, raw)
		return nil
	})
}
