package brokertest

import (
	"testing"
	"time"
)

// PollInterval is how long Eventually and WaitFor sleep between tries.
const PollInterval = 10 * time.Millisecond

// Eventually polls cond until it holds, and fails t once within has
// passed, saying what did not happen.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s did not happen", within, what)
		}
		time.Sleep(PollInterval)
	}
}

// WaitFor polls get until it returns no error and returns its value; once
// within has passed, it fails t with get's last error, which should say
// what was awaited and what there was.
func WaitFor[T any](t testing.TB, within time.Duration, get func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, err := get()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		time.Sleep(PollInterval)
	}
}
