package cputime_test

import (
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
