package limits_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer/limits"
)

func TestRetryPolicy(t *testing.T) {
	none := 0.0
	r := limits.Retry{MaxAttempts: 4, On: []string{"timeout", "rate_limited"}, Backoff: time.Second, MaxBackoff: 3 * time.Second, Jitter: &none}
	for attempt, want := range map[int]time.Duration{2: time.Second, 3: 2 * time.Second, 4: 3 * time.Second} {
		if got := r.Wait("run/hop", attempt); got != want {
			t.Errorf("wait before attempt %d: %s, want %s", attempt, got, want)
		}
	}
	if !r.Retries("timeout") || !r.Retries("rate_limited") || r.Retries("bad_request") || r.Retries("") {
		t.Error("Retries does not follow on")
	}
	j := 0.5
	r.Jitter = &j
	for _, hop := range []string{"a/1", "a/2", "b/1", "c/9"} {
		if got := r.Wait(hop, 2); got < 500*time.Millisecond || got > 1500*time.Millisecond {
			t.Errorf("jittered wait %s of %s is outside 0.5s..1.5s", got, hop)
		}
		if first, again := r.Wait(hop, 2), r.Wait(hop, 2); first != again {
			t.Errorf("jitter of %s is not deterministic", hop)
		}
	}
	if (limits.Retry{MaxAttempts: 3}).Validate() == nil {
		t.Error("max_attempts without on validates")
	}
}

// TestWorkflowOverridesRetry: a workflow's retry policy for a target
// replaces the target's own; the fallbacks and breaker stay.
func TestWorkflowOverridesRetry(t *testing.T) {
	s := limits.Set{
		Targets:         map[string]limits.Target{"writer": {Retry: limits.Retry{MaxAttempts: 3, On: []string{"timeout"}}, Fallback: []string{"backup"}}},
		WorkflowRetries: map[string]map[string]limits.Retry{"briefs": {"writer": {MaxAttempts: 1}}},
	}
	if got := s.TargetFor("default", "writer"); got.Retry.MaxAttempts != 3 || len(got.Fallback) != 1 {
		t.Fatalf("default workflow: %+v", got)
	}
	if got := s.TargetFor("briefs", "writer"); got.Retry.MaxAttempts != 1 || got.Retry.Enabled() || len(got.Fallback) != 1 {
		t.Fatalf("briefs workflow: %+v", got)
	}
	bad := limits.Set{Targets: map[string]limits.Target{"writer": {Fallback: []string{"writer"}}}}
	if bad.Validate() == nil {
		t.Fatal("a target that falls back to itself validates")
	}
}
