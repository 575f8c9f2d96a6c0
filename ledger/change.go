package ledger

// ChangeKind says what applying one event did to a run's state.
type ChangeKind uint8

// What an event can do to a run (see State.ApplyDecoded).
const (
	// ChangeIgnored: nothing but the head moved: a hop.completed or
	// hop.timed_out for a hop that is not open.
	ChangeIgnored ChangeKind = iota
	// ChangeStarted: run.started.
	ChangeStarted
	// ChangeOpened: hop.allowed opened Change.Hop.
	ChangeOpened
	// ChangeDeniedHop: hop.denied of an invoke under a fresh hop id,
	// recorded as the denied hop Change.Hop.
	ChangeDeniedHop
	// ChangeDenial: a hop.denied that records no hop: a denied reply or
	// cancel, a submission that did not decode, or an invoke reusing a
	// hop id. It counts in State.Denied all the same.
	ChangeDenial
	// ChangeClosed: hop.completed closed the open hop Change.Hop; its
	// Usage (nil when the reply reported none) counted as spent.
	ChangeClosed
	// ChangeTimedOut: hop.timed_out closed the open hop Change.Hop.
	ChangeTimedOut
	// ChangeBreach: run.limit_breached.
	ChangeBreach
	// ChangeHalted: run.halted; Change.Cancelled are the hops it closed.
	ChangeHalted
	// ChangeCompleted: run.completed.
	ChangeCompleted
	// ChangePending: hop.pending recorded Change.Hop, held for approval:
	// counted and reserved like an open hop, not delivered.
	ChangePending
	// ChangeApproved: hop.approved released the held hop Change.Hop,
	// open from now on.
	ChangeApproved
	// ChangeRejected: hop.rejected closed the held hop Change.Hop
	// unforwarded (status denied, reason approval).
	ChangeRejected
	// ChangeRetried: hop.retried started another attempt of the open hop
	// Change.Hop (same target).
	ChangeRetried
	// ChangeRerouted: hop.rerouted sent the open hop Change.Hop to a
	// fallback target.
	ChangeRerouted
	// ChangeProgress: hop.progress counted a progress of the open hop
	// Change.Hop, forwarded to its caller.
	ChangeProgress
	// ChangeSettled: a hop.completed that settles (HopCompleted.Settles)
	// charged the usage of Change.Hop, which the run's halt had closed
	// while it was open; the hop stays closed as the halt left it.
	ChangeSettled
)

var changeNames = [...]string{"ignored", "started", "opened", "denied hop", "denial", "closed", "timed out", "breach", "halted", "completed",
	"pending", "approved", "rejected", "retried", "rerouted", "progress", "settled"}

// String names the kind of change ("opened", "closed", ...).
func (k ChangeKind) String() string {
	if int(k) < len(changeNames) {
		return changeNames[k]
	}
	return "unknown"
}

// Change is what applying one event did to a run: the one account of which
// hops opened and closed and what spend counts, that every view of a run
// (the enforcer's, the projection's, the run tree's) builds on.
type Change struct {
	Kind ChangeKind
	// Hop is the hop the event opened, recorded as denied, held, released
	// or closed (ChangeOpened, ChangeDeniedHop, ChangeClosed,
	// ChangeTimedOut, ChangePending, ChangeApproved, ChangeRejected); nil
	// otherwise. It is the State's own hop, as it stands after the event.
	Hop *Hop
	// Cancelled are the open hops a halt closed, in the order run.halted
	// lists them.
	Cancelled []*Hop
}
