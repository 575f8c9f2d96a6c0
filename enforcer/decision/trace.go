package decision

import (
	"time"

	"github.com/tollgate/tollgate/enforcer/tracing"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// hopTrace fixes the trace ids of a hop at admission: the run's trace (the
// first caller's, or one derived from the run id), the hop's own span, and
// its parent: the caller's span from the traceparent it sent when that
// belongs to the run's trace, else the span of the hop the caller works on.
func hopTrace(st *ledger.State, sub *Submission, parent *ledger.Hop) (traceID, spanID, parentSpanID string) {
	caller := sub.Trace
	traceID = st.TraceID
	if traceID == "" {
		if caller.IsValid() && parent == nil {
			traceID = caller.TraceID().String()
		} else {
			traceID = tracing.RunTraceID(sub.RunToken).String()
		}
	}
	spanID = tracing.HopSpanID(sub.RunToken, sub.Env.HopID).String()
	switch {
	case caller.IsValid() && caller.TraceID().String() == traceID:
		parentSpanID = caller.SpanID().String()
	case parent != nil:
		parentSpanID = parent.SpanID
	}
	return traceID, spanID, parentSpanID
}

// startedState is the state a new run will have once its run.started is
// appended, for deciding its first hop before anything is written.
func startedState(run string, at time.Time, d *schemas.RunStarted) *ledger.State {
	view := ledger.NewState(run)
	view.Started, view.StartedAt, view.Limits = true, at, d.Limits
	view.Workflow, view.TraceID = d.Workflow, d.TraceID
	return view
}
