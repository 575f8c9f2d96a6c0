package enforcer

import (
	"fmt"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// nextFollowUp returns the next event a run's state calls for, if any. Such
// events are derived from state alone, so a crash between two appends is
// finished by whatever touches the run next:
//   - a denial that tripped a limit is followed by run.limit_breached,
//   - settled spend over the budget is recorded as a breach once,
//   - a breach whose action is "halt" is followed by run.halted,
//   - once the run's first hop is closed, run.completed.
func (e *Enforcer) nextFollowUp(st *ledger.State, now time.Time) (schemas.Event, bool) {
	if !st.Started {
		return schemas.Event{}, false
	}
	limits := e.limitsOf(st)
	action := func() string {
		if limits.OnBreach == HaltAndAlert && !st.Halted && st.Allowed > 0 {
			return "halt"
		}
		return "deny"
	}
	if b := st.Unrecorded; b != nil {
		return mustEvent(st.RunID, schemas.EventRunLimitBreached, b.HopID, now, &schemas.RunLimitBreached{
			Limit: b.Limit, Value: b.Value, Bound: b.Bound, Reason: b.Reason, From: b.From, To: b.To, Action: action(), HopID: b.HopID,
		})
	}
	if !st.Halted {
		if n := len(st.Breaches); n > 0 && st.Breaches[n-1].Action == "halt" {
			b := st.Breaches[n-1]
			return mustEvent(st.RunID, schemas.EventRunHalted, "", now, &schemas.RunHalted{
				Reason: fmt.Sprintf("%s tripped on %s -> %s (%g > %g)", b.Limit, b.From, b.To, b.Value, b.Bound),
				By:     "gateway", Limit: b.Limit, OpenHops: openHopIDs(st),
			})
		}
		if limit, value, bound, over := overBudget(st, limits); over && !st.Breached(limit) {
			return mustEvent(st.RunID, schemas.EventRunLimitBreached, "", now, &schemas.RunLimitBreached{
				Limit: limit, Value: value, Bound: bound, Reason: schemas.ReasonBudget, Action: action(),
			})
		}
	}
	if !st.Completed && !st.Halted {
		if root := st.Hops[st.RootHopID]; root != nil && !root.Open() {
			status := schemas.TaskState(root.Status)
			switch root.Status {
			case ledger.HopDenied:
				status = schemas.StateRejected
			case ledger.HopTimedOut:
				status = schemas.StateFailed
			}
			return mustEvent(st.RunID, schemas.EventRunCompleted, "", now, &schemas.RunCompleted{
				Status: status, Hops: st.Allowed, Tokens: st.Spent.Tokens, CostUSD: st.Spent.CostUSD,
				DurationMS: now.Sub(st.StartedAt).Milliseconds(),
			})
		}
	}
	return schemas.Event{}, false
}

func openHopIDs(st *ledger.State) []string {
	var ids []string
	for _, h := range st.OpenHops() {
		ids = append(ids, h.ID)
	}
	return ids
}

// mustEvent builds an event from data the enforcer itself made; those
// always encode.
func mustEvent(run string, typ schemas.EventType, hop string, at time.Time, data any) (schemas.Event, bool) {
	ev, err := schemas.NewEvent(run, typ, hop, at, data)
	return ev, err == nil
}

// isFollowUp reports whether an event type is only ever appended as a
// follow-up of the event before it.
func isFollowUp(t schemas.EventType) bool {
	switch t {
	case schemas.EventRunLimitBreached, schemas.EventRunHalted, schemas.EventRunCompleted:
		return true
	}
	return false
}
