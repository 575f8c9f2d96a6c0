package enforcer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/enforcertest"
	"github.com/tollgate/tollgate/enforcer/tracing"
	"github.com/tollgate/tollgate/schemas"
)

// TestTraceTreeMatchesHopTree runs the incident with tracing on and checks
// that the spans form the ledger's hop tree: one trace for the run, one
// span per hop with the ids the ledger recorded, each parented (through any
// spans the agents made themselves) by its parent hop's span.
func TestTraceTreeMatchesHopTree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	gatewayTP := tracing.NewProviderWith(sdktrace.NewSimpleSpanProcessor(exp), "tollgate")
	agentTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	g := enforcertest.Start(t, enforcertest.Options{Identities: demoIdentities, Policies: examplePolicies(t),
		Config: enforcer.Config{TracerProvider: gatewayTP}})

	connect := func(id string, h agent.Handler) *agent.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := agent.Connect(ctx, agent.Config{ID: id, Key: g.Keys[id], URL: g.Server.ClientURL(), Handler: h, TracerProvider: agentTP})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	connect("orchestrator", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		// The orchestrator plans inside a span of its own.
		ctx, plan := agentTP.Tracer("orchestrator").Start(ctx, "plan")
		defer plan.End()
		for _, to := range []string{"research", "writer"} {
			if _, err := task.Delegate(ctx, to, agent.UserText("work")); err != nil {
				return nil, err
			}
		}
		return &agent.Result{Output: agent.AgentText("done"), Usage: &schemas.Usage{InputTokens: 10, OutputTokens: 5}}, nil
	})
	connect("research", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		_, err := task.Delegate(ctx, "orchestrator", agent.UserText("again"))
		var denied *agent.DeniedError
		if !errors.As(err, &denied) {
			return nil, errors.New("re-invocation was not denied")
		}
		return &agent.Result{Output: agent.AgentText("sources"), Usage: &schemas.Usage{InputTokens: 100}}, nil
	})
	connect("writer", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		return &agent.Result{Output: agent.AgentText("draft"), Usage: &schemas.Usage{OutputTokens: 50, CostUSD: 0.5}}, nil
	})
	tomas := connect("tomas", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx, request := agentTP.Tracer("tomas").Start(ctx, "user request")
	reply, err := tomas.Start(ctx, "orchestrator", agent.UserText("brief"))
	request.End()
	if err != nil {
		t.Fatal(err)
	}
	recs := waitRun(t, g, reply.RunID, 8)
	st := runState(t, g, reply.RunID)
	if st.TraceID != request.SpanContext().TraceID().String() {
		t.Fatalf("run trace %s, want the caller's trace %s", st.TraceID, request.SpanContext().TraceID())
	}

	spans := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() != st.TraceID {
			t.Errorf("span %q is in trace %s, not the run's %s", s.Name, s.SpanContext.TraceID(), st.TraceID)
		}
		spans[s.SpanContext.SpanID()] = s
	}
	hopBySpan := map[string]string{}
	for _, h := range st.Hops {
		hopBySpan[h.SpanID] = h.ID
	}
	invokes := 0
	for _, r := range recs {
		if r.Event.Type != schemas.EventHopAllowed && r.Event.Type != schemas.EventHopDenied {
			continue
		}
		invokes++
		hop := st.Hops[r.Event.HopID]
		sid, err := trace.SpanIDFromHex(hop.SpanID)
		if err != nil {
			t.Fatalf("hop %s has no span id recorded", hop.ID)
		}
		span, ok := spans[sid]
		if !ok || !strings.HasPrefix(span.Name, "hop ") {
			t.Fatalf("no span %s for hop %s -> %s", sid, hop.From, hop.To)
		}
		if got := attr(span, "tollgate.depth"); got.AsInt64() != int64(hop.Depth) {
			t.Errorf("span depth %v, hop depth %d", got, hop.Depth)
		}
		if hop.Status == "denied" && attr(span, "tollgate.reason").AsString() != "policy" {
			t.Errorf("denied hop's span lacks its reason: %v", span.Attributes)
		}
		// Walk up through the agents' own spans to the next hop span.
		parent := span.Parent.SpanID()
		for parent.IsValid() {
			p, ok := spans[parent]
			if !ok || strings.HasPrefix(p.Name, "hop ") {
				break
			}
			parent = p.Parent.SpanID()
		}
		want := ""
		if ph := st.Hops[hop.ParentID]; ph != nil {
			want = ph.SpanID
		}
		if got := hopBySpan[parent.String()]; (want == "" && got != "") || (want != "" && parent.String() != want) {
			t.Errorf("hop %s -> %s: nearest hop span above it is %s (%s), want the parent hop's %s", hop.From, hop.To, parent, got, want)
		}
	}
	if invokes != 4 {
		t.Fatalf("%d invokes in the ledger, want 4 (root, research, denied re-invoke, writer)", invokes)
	}
	// The root hop hangs off the caller's own span; the orchestrator's task
	// span hangs off the root hop's span.
	root := spans[mustSpanID(t, st.Hops[st.RootHopID].SpanID)]
	if root.Parent.SpanID() != request.SpanContext().SpanID() {
		t.Errorf("root hop span's parent is %s, want tomas's request span", root.Parent.SpanID())
	}
	var task tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "task orchestrator" {
			task = s
		}
	}
	if task.Parent.SpanID() != root.SpanContext.SpanID() {
		t.Errorf("orchestrator's task span's parent is %s, want the root hop span", task.Parent.SpanID())
	}
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value
		}
	}
	return attribute.Value{}
}

func mustSpanID(t *testing.T, hex string) trace.SpanID {
	t.Helper()
	id, err := trace.SpanIDFromHex(hex)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
