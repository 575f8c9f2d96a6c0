package decision

import (
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// reroute returns the hop.rerouted data that sends hop, whose target is
// unavailable for cause, to the first of the target's fallbacks that can
// take it: registered and enabled, not a target the hop had before, not
// in the hop's ancestry (that would close a cycle), its circuit not open
// (circuit, when given), allowed by the policies (evaluated again with the
// fallback as the resource), and within the run's limits (hops, edge
// repeats). None can: false.
func (r *Rules) reroute(st *ledger.State, hop *ledger.Hop, cause string, extra int, now time.Time, circuit CircuitFunc) (*schemas.HopRerouted, bool) {
	if st.Closed() || !hop.Open() {
		return nil, false
	}
	t := r.Limits.TargetFor(st.Workflow, hop.To)
	if len(t.Fallback) == 0 {
		return nil, false
	}
	caller, ok := r.Dir.Get(hop.From)
	if !ok {
		return nil, false
	}
	lim := r.LimitsOf(st)
	if lim.MaxHops >= 0 && st.Allowed+extra+1 > lim.MaxHops {
		return nil, false
	}
	out := &schemas.HopRerouted{From: hop.To, Cause: cause}
	for _, id := range t.Fallback {
		fb, ok := r.Dir.Get(id)
		switch {
		case !ok || fb.Disabled || fb.Type == schemas.TypeUser:
			out.Skipped = append(out.Skipped, id+": not an enabled agent")
			continue
		case id == hop.To || slices.Contains(hop.Rerouted, id):
			out.Skipped = append(out.Skipped, id+": had the hop before")
			continue
		case slices.Contains(hop.Ancestry, id):
			out.Skipped = append(out.Skipped, id+": in the hop's ancestry (cycle)")
			continue
		case lim.MaxEdgeRepeats >= 0 && st.Edges[ledger.Edge{From: hop.From, To: id}]+1 > lim.MaxEdgeRepeats:
			out.Skipped = append(out.Skipped, id+": max_edge_repeats")
			continue
		}
		if circuit != nil && circuit(id) {
			out.Skipped = append(out.Skipped, id+": circuit open")
			continue
		}
		dec := r.Engine.Decide(r.fallbackRequest(st, hop, caller, fb))
		if !dec.Allow || len(dec.Errors) > 0 {
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: policy %v", id, dec.PolicyIDs))
			continue
		}
		out.To, out.ToType, out.PolicyIDs = id, fb.Type, dec.PolicyIDs
		out.Deadline = now.Add(r.TimeoutFor(fb)).UTC()
		return out, true
	}
	return nil, false
}

// fallbackRequest is the Cedar request of hop as if its caller invoked fb.
func (r *Rules) fallbackRequest(st *ledger.State, hop *ledger.Hop, caller, fb *broker.Identity) policy.Request {
	d := &schemas.HopDecision{
		Action: ActionFor(fb.Type), Depth: hop.Depth, Ancestry: hop.Ancestry, OnBehalfOf: st.OnBehalfOf,
		Tainted: hop.Tainted, TaintSources: hop.TaintSources,
	}
	return PolicyRequest(st, caller, fb, d)
}

// CircuitFunc reports whether target's circuit is open (fleet-wide).
type CircuitFunc func(target string) bool

// rerouteAtAdmission re-routes a hop just allowed to target when target is
// unavailable now: its circuit is open, or no consumer is bound to take
// its deliveries. Only targets with fallbacks are asked. The hop.rerouted
// follows the hop.allowed in the same step; nothing is delivered to
// target.
func (r *Rules) rerouteAtAdmission(st *ledger.State, allowed schemas.Event, target *broker.Identity, circuitOpen bool, now time.Time, in Inputs) (*schemas.Event, error) {
	if len(r.Limits.TargetFor(st.Workflow, target.ID).Fallback) == 0 {
		return nil, nil
	}
	cause := ""
	switch {
	case circuitOpen:
		cause = schemas.RerouteCircuit
	case in.Bound != nil:
		bound, err := in.Bound(target.ID)
		if err != nil {
			return nil, err
		}
		if !bound {
			cause = schemas.RerouteNoConsumer
		}
	}
	if cause == "" {
		return nil, nil
	}
	data, err := allowed.DecodeData()
	if err != nil {
		return nil, fmt.Errorf("reroute: %w", err)
	}
	dec, ok := data.(*schemas.HopDecision)
	if !ok {
		return nil, nil
	}
	// The hop as it is once recorded (the run counts it: extra 1).
	hop := &ledger.Hop{ID: allowed.HopID, ParentID: dec.ParentHopID, From: dec.From, To: dec.To, Depth: dec.Depth,
		Ancestry: dec.Ancestry, Status: ledger.HopOpen, Tainted: dec.Tainted, TaintSources: dec.TaintSources}
	d, ok := r.reroute(st, hop, cause, 1, now, in.Circuit)
	if !ok {
		return nil, nil // no fallback can take it: it waits for its target
	}
	ev := schemas.EventOf(st.RunID, schemas.EventHopRerouted, hop.ID, now, d)
	return &ev, nil
}
