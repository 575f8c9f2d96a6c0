package decision

import (
	"fmt"
	"time"

	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// FollowUp returns the next event a run's state calls for, if any. Such
// events are derived from state alone, so a crash between two appends is
// finished by whatever touches the run next:
//   - a denial that tripped a limit is followed by run.limit_breached,
//   - settled spend over the budget is recorded as a breach once,
//   - a breach whose action is "halt" is followed by run.halted,
//   - once the run's first hop is closed, run.completed.
func (r *Rules) FollowUp(st *ledger.State, now time.Time) (schemas.Event, bool) {
	if !st.Started {
		return schemas.Event{}, false
	}
	lim := r.LimitsOf(st)
	if b := st.Unrecorded; b != nil {
		return schemas.EventOf(st.RunID, schemas.EventRunLimitBreached, b.HopID, now, &schemas.RunLimitBreached{
			Limit: b.Limit, Value: b.Value, Bound: b.Bound, Reason: b.Reason, From: b.From, To: b.To,
			Action: lim.BreachAction(st.Halted, st.Allowed), HopID: b.HopID,
		}), true
	}
	if !st.Halted {
		if n := len(st.Breaches); n > 0 && st.Breaches[n-1].Action == limits.ActionHalt {
			b := st.Breaches[n-1]
			return schemas.EventOf(st.RunID, schemas.EventRunHalted, "", now, &schemas.RunHalted{
				Reason: fmt.Sprintf("%s tripped on %s -> %s (%g > %g)", b.Limit, b.From, b.To, b.Value, b.Bound),
				By:     schemas.GatewayActor, Limit: b.Limit, OpenHops: OpenHopIDs(st),
			}), true
		}
		if limit, value, bound, over := OverBudget(st, lim); over && !st.Breached(limit) {
			return schemas.EventOf(st.RunID, schemas.EventRunLimitBreached, "", now, &schemas.RunLimitBreached{
				Limit: limit, Value: value, Bound: bound, Reason: schemas.ReasonBudget, Action: lim.BreachAction(st.Halted, st.Allowed),
			}), true
		}
	}
	if !st.Completed && !st.Halted {
		if root := st.Hops[st.RootHopID]; root != nil && !root.Live() {
			status := schemas.TaskState(root.Status)
			switch root.Status {
			case ledger.HopDenied:
				status = schemas.StateRejected
			case ledger.HopTimedOut:
				status = schemas.StateFailed
			}
			return schemas.EventOf(st.RunID, schemas.EventRunCompleted, "", now, &schemas.RunCompleted{
				Status: status, Hops: st.Allowed, Tokens: st.Spent.Tokens, CostUSD: st.Spent.CostUSD,
				DurationMS: now.Sub(st.StartedAt).Milliseconds(),
			}), true
		}
	}
	return schemas.Event{}, false
}

// IsFollowUp reports whether an event type is only ever appended as a
// follow-up of the event before it.
func IsFollowUp(t schemas.EventType) bool {
	switch t {
	case schemas.EventRunLimitBreached, schemas.EventRunHalted, schemas.EventRunCompleted, schemas.EventHopRerouted:
		return true
	}
	return false
}

// OpenHopIDs returns the ids of the run's open hops in ledger order.
func OpenHopIDs(st *ledger.State) []string {
	var ids []string
	for _, h := range st.OpenHops() {
		ids = append(ids, h.ID)
	}
	return ids
}

// Due returns the events a run's timer firing at now calls for: every
// open hop past its deadline times out, every hop held for approval past
// its deadline is rejected, and a run past its wall clock has its breach
// recorded.
func (r *Rules) Due(st *ledger.State, now time.Time) []schemas.Event {
	return r.DueWith(st, now, nil)
}

// DueWith is Due with the fleet-wide circuit states (nil: all closed): a
// hop past its deadline is retried when its target's policy allows, else
// re-routed to a fallback, else timed out.
func (r *Rules) DueWith(st *ledger.State, now time.Time, circuit CircuitFunc) []schemas.Event {
	// A completed run's open hops (delegations its root did not wait for)
	// still time out; a halted run has none.
	if !st.Started || st.Halted {
		return nil
	}
	var events []schemas.Event
	retried := 0
	for _, hop := range st.OpenHops() {
		if hop.Deadline.IsZero() || now.Before(hop.Deadline) {
			continue
		}
		if !hop.Pending() && !st.Completed { // an ended run's stragglers just time out
			if d, ok := r.retry(st, hop, schemas.RetryTimeout, "", retried, now); ok {
				retried++
				events = append(events, schemas.EventOf(st.RunID, schemas.EventHopRetried, hop.ID, now, d))
				continue
			}
			if d, ok := r.reroute(st, hop, schemas.RerouteTimeout, retried, now, circuit); ok {
				retried++
				d.Attempts = hop.CurrentAttempt()
				events = append(events, schemas.EventOf(st.RunID, schemas.EventHopRerouted, hop.ID, now, d))
				continue
			}
		}
		if hop.Pending() {
			events = append(events, schemas.EventOf(st.RunID, schemas.EventHopRejected, hop.ID, now, &schemas.HopRejected{
				By: schemas.GatewayActor, Message: fmt.Sprintf("not approved before its deadline %s", hop.Deadline.Format(time.RFC3339)),
			}))
			continue
		}
		events = append(events, schemas.EventOf(st.RunID, schemas.EventHopTimedOut, hop.ID, now, &schemas.HopTimedOut{
			Deadline: hop.Deadline, LatencyMS: now.Sub(hop.OpenedAt).Milliseconds(),
		}))
	}
	lim := r.LimitsOf(st)
	if wc := lim.WallClock(); wc > 0 && !st.Completed && !st.Breached(limits.WallClock) && now.Sub(st.StartedAt) >= wc {
		action := limits.ActionDeny
		if lim.OnBreach == limits.HaltAndAlert {
			action = limits.ActionHalt
		}
		events = append(events, schemas.EventOf(st.RunID, schemas.EventRunLimitBreached, "", now, &schemas.RunLimitBreached{
			Limit: limits.WallClock, Value: now.Sub(st.StartedAt).Seconds(), Bound: wc.Seconds(),
			Reason: schemas.ReasonBudget, Action: action,
		}))
	}
	return events
}

// NextDue is when the run next needs its timer: its earliest open hop's
// deadline, or the end of its wall clock; zero when nothing is due.
func (r *Rules) NextDue(st *ledger.State) time.Time {
	if !st.Started || st.Halted {
		return time.Time{}
	}
	var due time.Time
	if wc := r.LimitsOf(st).WallClock(); wc > 0 && !st.Completed && !st.Breached(limits.WallClock) {
		due = st.StartedAt.Add(wc)
	}
	for id := range st.Open {
		if d := st.Hops[id].Deadline; !d.IsZero() && (due.IsZero() || d.Before(due)) {
			due = d
		}
	}
	return due
}

// Halt returns the run.halted an operator's kill switch records, with the
// hops it cancels.
func Halt(st *ledger.State, by, reason string, now time.Time) schemas.Event {
	return schemas.EventOf(st.RunID, schemas.EventRunHalted, "", now, &schemas.RunHalted{
		Reason: reason, By: by, OpenHops: OpenHopIDs(st),
	})
}
