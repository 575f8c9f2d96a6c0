// Package cputime measures the CPU time a benchmark's process uses. On a
// shared machine the wall time includes waiting for a core; the CPU time
// much less so, which makes it the figure that compares builds.
package cputime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is the CPU time the process has used so far: user and system,
// every thread (the garbage collector's work counts).
func Process() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// Now is Process for a test or benchmark: it fails tb when the time
// cannot be read.
func Now(tb testing.TB) time.Duration {
	tb.Helper()
	d, err := Process()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// Loop runs f in b.Loop and reports, beside the wall time, the CPU time
// per operation as the metric cpu-ns/op, and the allocations.
func Loop(b *testing.B, f func()) {
	b.ReportAllocs()
	var start time.Duration
	n := 0
	for b.Loop() {
		if n == 0 {
			start = Now(b)
		}
		f()
		n++
	}
	b.ReportMetric(float64(Now(b)-start)/float64(n), "cpu-ns/op")
}

// Of is the CPU time another process has used so far (user and system,
// from /proc/<pid>/stat on Linux), for a benchmark whose work is shared
// with a server running apart, such as ClickHouse.
func Of(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after its closing parenthesis (state is field 3, utime 14, stime 15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time of process %d: malformed stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of process %d: malformed stat %q", pid, b)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
		}
		ticks += n
	}
	// /proc reports in USER_HZ, which Linux fixes at 100 for user space.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
