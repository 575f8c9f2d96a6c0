package limits

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// RetryOnTimeout in Retry.On retries an attempt that passed its deadline;
// every other entry is an error class a failed reply may declare
// (result.error_class).
const RetryOnTimeout = "timeout"

// Retry is how the gateway retries the hops to one target: it re-delivers
// the same hop (same hop id, attempt number in the delivery) after a
// backoff, never beyond the run's limits. The caller hears only the last
// attempt's outcome.
type Retry struct {
	// MaxAttempts counts every delivery of a hop, the first included: 3
	// retries twice. 0 or 1: no retries.
	MaxAttempts int `yaml:"max_attempts"`
	// On lists what is retried: "timeout", and the error classes of
	// failed replies (e.g. rate_limited, upstream_unavailable).
	On []string `yaml:"on,flow"`
	// Backoff is the wait before the first retry (default 1s); each next
	// one waits twice as long, up to MaxBackoff (default 30s). Jitter
	// (0 to 1, default 0.2) spreads each wait by up to that share either
	// way, derived from the hop id so that a decision replays the same.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	Jitter     *float64      `yaml:"jitter"`
}

// Target is how hops to one target agent are delivered: retries, the
// fallback targets that take over when it is unavailable, and its circuit
// breaker.
type Target struct {
	Retry Retry `yaml:"retry"`
	// Fallback are the agents a hop is re-routed to, in order, when its
	// target is unavailable (timed out after its retries, no consumer
	// bound, circuit open). Policy is evaluated again against each.
	Fallback []string `yaml:"fallback,flow"`
	// Breaker opens the target's circuit after repeated failures.
	Breaker Breaker `yaml:"breaker"`
}

// Enabled reports whether the policy retries anything.
func (r Retry) Enabled() bool { return r.MaxAttempts > 1 && len(r.On) > 0 }

// Retries reports whether an attempt that failed with cause (timeout, or a
// failed reply's error class) is retried.
func (r Retry) Retries(cause string) bool {
	return r.Enabled() && cause != "" && slices.Contains(r.On, cause)
}

// Wait is the backoff before attempt (2 for the first retry) of hop.
func (r Retry) Wait(hop string, attempt int) time.Duration {
	base, most := r.Backoff, r.MaxBackoff
	if base <= 0 {
		base = time.Second
	}
	if most <= 0 {
		most = 30 * time.Second
	}
	d := base
	for i := 2; i < attempt && d < most; i++ {
		d *= 2
	}
	d = min(d, most)
	jitter := 0.2
	if r.Jitter != nil {
		jitter = *r.Jitter
	}
	if jitter > 0 {
		h := fnv.New64a()
		h.Write([]byte(hop))
		h.Write([]byte(strconv.Itoa(attempt)))
		frac := float64(h.Sum64()%2001)/1000 - 1 // -1 .. 1
		d = time.Duration(float64(d) * (1 + jitter*frac))
	}
	return max(d, 0)
}

// Validate reports every problem with the retry policy.
func (r Retry) Validate() error {
	var errs []error
	if r.MaxAttempts < 0 || r.MaxAttempts > 20 {
		errs = append(errs, fmt.Errorf("max_attempts is %d, want 0 to 20", r.MaxAttempts))
	}
	if r.MaxAttempts > 1 && len(r.On) == 0 {
		errs = append(errs, errors.New(`max_attempts is set but on lists nothing to retry (timeout, or error classes)`))
	}
	for _, c := range r.On {
		if c == "" || len(c) > 64 {
			errs = append(errs, fmt.Errorf("on: %q is not an error class", c))
		}
	}
	if r.Backoff < 0 || r.MaxBackoff < 0 {
		errs = append(errs, errors.New("backoff and max_backoff must not be negative"))
	}
	if r.Jitter != nil && (*r.Jitter < 0 || *r.Jitter > 1) {
		errs = append(errs, fmt.Errorf("jitter is %g, want 0 to 1", *r.Jitter))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the target's settings.
func (t Target) Validate(id string) error {
	var errs []error
	if err := t.Retry.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("retry: %w", err))
	}
	for _, f := range t.Fallback {
		if err := schemas.CheckPrincipalID(f); err != nil {
			errs = append(errs, fmt.Errorf("fallback %q: %w", f, err))
		}
		if f == id {
			errs = append(errs, fmt.Errorf("fallback %q is the target itself", f))
		}
	}
	if err := t.Breaker.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("breaker: %w", err))
	}
	return errors.Join(errs...)
}

// Breaker opens a target's circuit, fleet-wide, after Failures failures
// (timeouts, failed replies, attempts retried) within Window: hops to it
// then fail fast with reason unavailable, or go to a fallback. After
// CoolDown one trial hop is let through (half-open); its success closes
// the circuit, its failure opens it again.
type Breaker struct {
	// Failures is K; 0 turns the breaker off.
	Failures int           `yaml:"failures"`
	Window   time.Duration `yaml:"window"`    // default 1m
	CoolDown time.Duration `yaml:"cool_down"` // default 30s
}

// Enabled reports whether the breaker is on.
func (b Breaker) Enabled() bool { return b.Failures > 0 }

// WindowOrDefault is the failure window (default 1m).
func (b Breaker) WindowOrDefault() time.Duration {
	if b.Window <= 0 {
		return time.Minute
	}
	return b.Window
}

// CoolDownOrDefault is the cool-down (default 30s).
func (b Breaker) CoolDownOrDefault() time.Duration {
	if b.CoolDown <= 0 {
		return 30 * time.Second
	}
	return b.CoolDown
}

// Validate reports a problem with the breaker.
func (b Breaker) Validate() error {
	if b.Failures < 0 || b.Window < 0 || b.CoolDown < 0 {
		return errors.New("failures, window and cool_down must not be negative")
	}
	return nil
}

// TargetFor returns the delivery settings of hops to target in runs of
// workflow: the target's, with the workflow's override of its retry
// policy when it sets one.
func (s Set) TargetFor(workflow, target string) Target {
	t := s.Targets[target]
	if o, ok := s.WorkflowRetries[workflow][target]; ok {
		t.Retry = o
	}
	return t
}
