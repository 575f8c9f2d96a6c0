package decision

import (
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// retry returns the hop.retried data that an attempt of hop failing with
// cause (schemas.RetryTimeout, or schemas.RetryFailed with the reply's
// error class) calls for: when the target's retry policy retries it, the
// hop has attempts left, and another attempt keeps the run within its
// limits (hops, edge repeats, wall clock), counting extra attempts this
// step already scheduled. The attempt goes to the same target, never to
// the caller.
func (r *Rules) retry(st *ledger.State, hop *ledger.Hop, cause, class string, extra int, now time.Time) (*schemas.HopRetried, bool) {
	if st.Closed() || !hop.Open() {
		return nil, false
	}
	policy := r.Limits.TargetFor(st.Workflow, hop.To).Retry
	key := cause
	if cause == schemas.RetryFailed {
		key = class
	}
	if !policy.Retries(key) || hop.CurrentAttempt() >= policy.MaxAttempts {
		return nil, false
	}
	target, ok := r.Dir.Get(hop.To)
	if !ok || target.Disabled {
		return nil, false
	}
	lim := r.LimitsOf(st)
	if lim.MaxHops >= 0 && st.Allowed+extra+1 > lim.MaxHops {
		return nil, false
	}
	if lim.MaxEdgeRepeats >= 0 && st.Edges[ledger.Edge{From: hop.From, To: hop.To}]+extra+1 > lim.MaxEdgeRepeats {
		return nil, false
	}
	attempt := hop.CurrentAttempt() + 1
	at := now.Add(policy.Wait(st.RunID+"/"+hop.ID, attempt)).UTC()
	deadline := at.Add(r.TimeoutFor(target)).UTC()
	if wc := lim.WallClock(); wc > 0 && !st.StartedAt.IsZero() && at.After(st.StartedAt.Add(wc)) {
		return nil, false
	}
	return &schemas.HopRetried{Attempt: attempt, Cause: cause, ErrorClass: class, RetryAt: at, Deadline: deadline}, true
}

// AttemptToken names the deliveries of one attempt of a hop to its
// target: the hop id for the first attempt, "<hop>-a<n>" for the n-th, so
// that each attempt's invoke and cancel are written once.
func AttemptToken(hop string, attempt int) string {
	if attempt <= 1 {
		return hop
	}
	return hop + "-a" + itoa(attempt)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// RetryDue reports whether hop waits for a retried attempt that is due at
// now: the attempt's delivery is made when its timer fires.
func RetryDue(hop *ledger.Hop, now time.Time) bool {
	return hop != nil && hop.Open() && hop.Attempt > 1 && !hop.RetryAt.IsZero() && !now.Before(hop.RetryAt)
}
