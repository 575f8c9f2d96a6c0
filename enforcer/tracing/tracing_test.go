package tracing_test

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/enforcer/tracing"
)

func TestIDsAreStableAndDistinct(t *testing.T) {
	first, again := tracing.RunTraceID("r1"), tracing.RunTraceID("r1")
	if first != again || first == tracing.RunTraceID("r2") {
		t.Fatal("run trace ids are not a function of the run id")
	}
	if tracing.HopSpanID("r", "h1") == tracing.HopSpanID("r", "h2") || tracing.HopSpanID("r1", "h") == tracing.HopSpanID("r2", "h") {
		t.Fatal("hop span ids collide")
	}
	if !tracing.RunTraceID("r").IsValid() || !tracing.HopSpanID("r", "h").IsValid() {
		t.Fatal("invalid ids")
	}
	tp := tracing.TraceParent(tracing.RunTraceID("r"), tracing.HopSpanID("r", "h"))
	if len(tp) != 55 || !strings.HasPrefix(tp, "00-") || !strings.HasSuffix(tp, "-01") {
		t.Fatalf("traceparent %q", tp)
	}
}

// TestProviderHonoursWithIDs: a span started (root or child) under WithIDs
// carries exactly those ids; others get random valid ones.
func TestProviderHonoursWithIDs(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewProviderWith(sdktrace.NewSimpleSpanProcessor(exp), "test")
	tid, sid := tracing.RunTraceID("run"), tracing.HopSpanID("run", "hop")
	_, root := tp.Tracer("t").Start(tracing.WithIDs(context.Background(), tid, sid), "root")
	root.End()
	parent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: tracing.HopSpanID("run", "parent"), TraceFlags: trace.FlagsSampled, Remote: true}))
	child := tracing.HopSpanID("run", "child")
	_, c := tp.Tracer("t").Start(tracing.WithIDs(parent, tid, child), "child")
	c.End()
	_, free := tp.Tracer("t").Start(context.Background(), "free")
	free.End()
	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	if spans[0].SpanContext.TraceID() != tid || spans[0].SpanContext.SpanID() != sid {
		t.Errorf("root span ids %s/%s", spans[0].SpanContext.TraceID(), spans[0].SpanContext.SpanID())
	}
	if spans[1].SpanContext.SpanID() != child || spans[1].Parent.SpanID() != tracing.HopSpanID("run", "parent") {
		t.Errorf("child span %s parent %s", spans[1].SpanContext.SpanID(), spans[1].Parent.SpanID())
	}
	if !spans[2].SpanContext.IsValid() || spans[2].SpanContext.TraceID() == tid {
		t.Errorf("span without ids got %v", spans[2].SpanContext)
	}
}

func TestConfig(t *testing.T) {
	if err := (tracing.Config{Exporter: "zipkin"}).Validate(); err == nil {
		t.Error("unknown exporter accepted")
	}
	tp, err := tracing.NewProvider(context.Background(), tracing.Config{}, nil)
	if err != nil || tp != nil {
		t.Errorf("default config: %v, %v; want tracing off", tp, err)
	}
	var out strings.Builder
	tp, err = tracing.NewProvider(context.Background(), tracing.Config{Exporter: "stdout"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	_, s := tp.Tracer("t").Start(context.Background(), "hello")
	s.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"Name":"hello"`) {
		t.Errorf("stdout exporter wrote %q", out.String())
	}
}
