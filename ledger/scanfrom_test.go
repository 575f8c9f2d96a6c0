package ledger_test

import (
	"testing"
	"time"
)

// TestScanFrom: a reader following the ledger reads each event once:
// ScanFrom returns the last sequence it read to, and the next call from
// there reads only what was appended since; a scan from a time after the
// last event reads nothing and still reports the head.
func TestScanFrom(t *testing.T) {
	l, _ := newLedger(t)
	ctx := ctxT(t)
	read := func(after uint64, from time.Time) (uint64, []uint64) {
		t.Helper()
		var seqs []uint64
		last, err := l.ScanFrom(ctx, after, from, func(_ string, _ []byte, seq uint64) error {
			seqs = append(seqs, seq)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return last, seqs
	}
	if last, seqs := read(0, time.Time{}); last != 0 || len(seqs) != 0 {
		t.Fatalf("empty ledger: last %d, read %v", last, seqs)
	}
	appendRun(t, l, "run-a")
	last, seqs := read(0, time.Time{})
	if last != 5 || len(seqs) != 5 || seqs[0] != 1 || seqs[4] != 5 {
		t.Fatalf("first read: last %d, read %v", last, seqs)
	}
	if again, seqs := read(last, time.Time{}); again != last || len(seqs) != 0 {
		t.Fatalf("nothing new: last %d, read %v", again, seqs)
	}
	appendRun(t, l, "run-b")
	next, seqs := read(last, time.Time{})
	if next != 10 || len(seqs) != 5 || seqs[0] != 6 {
		t.Fatalf("after a second run: last %d, read %v", next, seqs)
	}
	if at, seqs := read(0, time.Now().Add(time.Hour)); at != 10 || len(seqs) != 0 {
		t.Fatalf("from an hour ahead: last %d, read %v", at, seqs)
	}
	if _, err := l.ScanFrom(ctx, 3, time.Now(), func(string, []byte, uint64) error { return nil }); err == nil {
		t.Fatal("a sequence and a time at once were accepted")
	}
}
