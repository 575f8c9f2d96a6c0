package cputime_test

import (
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/bench/cputime"
)

// TestProcessCountsWork: spinning on the CPU shows in the process's CPU
// time, which never goes back.
func TestProcessCountsWork(t *testing.T) {
	before := cputime.Now(t)
	x := 0
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	after := cputime.Now(t)
	if after-before < 10*time.Millisecond || x == 0 {
		t.Fatalf("50 ms of spinning counted %s of CPU", after-before)
	}
}

// TestOfCountsWork: another process's reading (here our own, by pid)
// agrees with Process within /proc's 10 ms ticks.
func TestOfCountsWork(t *testing.T) {
	x := 0
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	of, err := cputime.Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self := cputime.Now(t)
	if of < 10*time.Millisecond || of > self+20*time.Millisecond || self-of > 100*time.Millisecond || x == 0 {
		t.Fatalf("Of(self) = %s, Process = %s", of, self)
	}
	if _, err := cputime.Of(-1); err == nil {
		t.Fatal("Of(-1): no error")
	}
}
