package decision

import (
	"github.com/tollgate/tollgate/enforcer/tracing"
	"github.com/tollgate/tollgate/ledger"
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
