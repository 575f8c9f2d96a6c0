package enforcer

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/tracing"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// tracerName is the instrumentation scope of hop spans.
const tracerName = "github.com/tollgate/tollgate/enforcer"

// callerSpan returns the trace context the submission carried in its
// traceparent header, if any.
func callerSpan(h map[string][]string) trace.SpanContext {
	if len(h) == 0 {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), broker.HeaderCarrier(h))
	return trace.SpanContextFromContext(ctx)
}

func traceParentOf(hop *ledger.Hop) string {
	if hop.TraceID == "" || hop.SpanID == "" {
		return ""
	}
	return "00-" + hop.TraceID + "-" + hop.SpanID + "-01"
}

// exportSpans emits the spans of hops that the records closed (replied,
// cancelled, timed out, halted) or denied. Spans are telemetry: an error
// here never fails a hop, and a crash before it loses only the span.
func (e *Enforcer) exportSpans(st *ledger.State, recs []ledger.Record) {
	if e.tracer == nil {
		return
	}
	for _, rec := range recs {
		ev := &rec.Event
		data, err := ev.DecodeData()
		if err != nil {
			continue
		}
		switch d := data.(type) {
		case *schemas.HopDecision:
			if ev.Type == schemas.EventHopDenied && d.Kind == schemas.KindInvoke {
				if hop := st.Hops[ev.HopID]; hop != nil && hop.Status == ledger.HopDenied && hop.Seq == ev.Seq {
					e.hopSpan(st, hop, d, ev, "denied", string(d.Reason))
				}
			}
		case *schemas.HopCompleted:
			if hop := st.Hops[ev.HopID]; hop != nil {
				e.hopSpan(st, hop, nil, ev, string(d.Status), d.Error)
			}
		case *schemas.HopTimedOut:
			if hop := st.Hops[ev.HopID]; hop != nil {
				e.hopSpan(st, hop, nil, ev, string(ledger.HopTimedOut), "deadline passed")
			}
		case *schemas.RunHalted:
			for _, id := range d.OpenHops {
				if hop := st.Hops[id]; hop != nil {
					e.hopSpan(st, hop, nil, ev, "halted", d.Reason)
				}
			}
		}
	}
}

func (e *Enforcer) hopSpan(st *ledger.State, hop *ledger.Hop, denial *schemas.HopDecision, closed *schemas.Event, status, why string) {
	tid, err1 := trace.TraceIDFromHex(hop.TraceID)
	sid, err2 := trace.SpanIDFromHex(hop.SpanID)
	if err1 != nil || err2 != nil {
		return
	}
	ctx := tracing.WithIDs(context.Background(), tid, sid)
	if psid, err := trace.SpanIDFromHex(hop.ParentSpanID); err == nil {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: psid, TraceFlags: trace.FlagsSampled, Remote: true,
		}))
	}
	decision := "allowed"
	if denial != nil {
		decision = "denied"
	}
	attrs := []attribute.KeyValue{
		attribute.String("tollgate.run_id", st.RunID),
		attribute.String("tollgate.hop_id", hop.ID),
		attribute.String("tollgate.caller", hop.From),
		attribute.String("tollgate.target", hop.To),
		attribute.String("tollgate.kind", string(schemas.KindInvoke)),
		attribute.String("tollgate.action", string(hop.Action)),
		attribute.Int("tollgate.depth", hop.Depth),
		attribute.String("tollgate.decision", decision),
		attribute.String("tollgate.status", status),
		attribute.String("tollgate.on_behalf_of", st.OnBehalfOf),
		attribute.Int64("tollgate.tokens", hop.Usage.Tokens()),
		attribute.Float64("tollgate.cost_usd", hop.Usage.Cost()),
	}
	if denial != nil {
		attrs = append(attrs, attribute.String("tollgate.reason", string(denial.Reason)), attribute.String("tollgate.policy_ids", strings.Join(denial.PolicyIDs, ",")))
	}
	start := hop.OpenedAt
	_, span := e.tracer.Start(ctx, "hop "+hop.From+" -> "+hop.To,
		trace.WithTimestamp(start), trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	if status != string(schemas.StateCompleted) {
		span.SetStatus(codes.Error, status+": "+why)
	}
	span.End(trace.WithTimestamp(closed.At))
}
