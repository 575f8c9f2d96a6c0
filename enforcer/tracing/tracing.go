// Package tracing gives Tollgate runs an OpenTelemetry trace: one trace per
// run, one span per hop, parented by the span of the caller that made the
// hop (its hop span, or a span of its own inside it). Trace and span ids are
// fixed at admission, recorded in the ledger and stamped into deliveries as
// W3C traceparent, so an agent's own spans join the run's trace; the hop's
// span is exported when the hop closes, with the recorded start time and
// the same ids, even if another enforcer instance (or a restarted one)
// closes it. That needs the TracerProvider to come from NewProvider, whose
// ID generator honours ids set with WithIDs.
package tracing

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// RunTraceID is the trace id of a run that no caller's trace context
// started: derived from the run id, so anyone with the ledger finds it.
func RunTraceID(run string) trace.TraceID {
	var id trace.TraceID
	sum := sha256.Sum256([]byte("tollgate trace " + run))
	copy(id[:], sum[:])
	return id
}

// HopSpanID is the span id of a hop, derived from its run and hop ids.
func HopSpanID(run, hop string) trace.SpanID {
	var id trace.SpanID
	sum := sha256.Sum256([]byte("tollgate span " + run + " " + hop))
	copy(id[:], sum[:])
	return id
}

// TraceParent formats a W3C traceparent for a sampled span.
func TraceParent(tid trace.TraceID, sid trace.SpanID) string {
	return fmt.Sprintf("00-%s-%s-01", tid, sid)
}

type idsKey struct{}

type ids struct {
	trace trace.TraceID
	span  trace.SpanID
}

// WithIDs makes the next span started with ctx (from a provider made by
// NewProvider) take these ids.
func WithIDs(ctx context.Context, tid trace.TraceID, sid trace.SpanID) context.Context {
	return context.WithValue(ctx, idsKey{}, ids{tid, sid})
}

// IDGenerator returns span ids set with WithIDs, and random ones otherwise.
func IDGenerator() sdktrace.IDGenerator { return idGenerator{} }

type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if v, ok := ctx.Value(idsKey{}).(ids); ok {
		return v.trace, v.span
	}
	var tid trace.TraceID
	var sid trace.SpanID
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	return tid, sid
}

func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if v, ok := ctx.Value(idsKey{}).(ids); ok {
		return v.span
	}
	var sid trace.SpanID
	_, _ = rand.Read(sid[:])
	sid[7] |= 1 // never the invalid all-zero id
	return sid
}

// Config selects the span exporter.
type Config struct {
	// Exporter is "none" (default), "stdout", "otlp-grpc" or "otlp-http".
	Exporter string `yaml:"exporter"`
	// Endpoint is the OTLP collector (host:port); empty uses the
	// exporter's default and the OTEL_EXPORTER_OTLP_* environment.
	Endpoint string `yaml:"endpoint"`
	// Insecure turns TLS off for OTLP.
	Insecure bool `yaml:"insecure"`
	// ServiceName names the gateway in traces. Default "tollgate".
	ServiceName string `yaml:"service_name"`
}

// Validate reports a problem with the config.
func (c Config) Validate() error {
	switch c.Exporter {
	case "", "none", "stdout", "otlp-grpc", "otlp-http":
		return nil
	}
	return fmt.Errorf("tracing.exporter is %q, want none, stdout, otlp-grpc or otlp-http", c.Exporter)
}

// Enabled reports whether spans are exported.
func (c Config) Enabled() bool { return c.Exporter != "" && c.Exporter != "none" }

// NewProvider builds a TracerProvider that exports through the configured
// exporter (batched) and honours WithIDs. stdout writes to w (os.Stdout
// when nil). It returns nil when tracing is off.
func NewProvider(ctx context.Context, c Config, w io.Writer) (*sdktrace.TracerProvider, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, nil
	}
	var exp sdktrace.SpanExporter
	var err error
	switch c.Exporter {
	case "stdout":
		if w == nil {
			w = os.Stdout
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	case "otlp-grpc":
		var opts []otlptracegrpc.Option
		if c.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(c.Endpoint))
		}
		if c.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case "otlp-http":
		var opts []otlptracehttp.Option
		if c.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(c.Endpoint))
		}
		if c.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing exporter %s: %w", c.Exporter, err)
	}
	return NewProviderWith(sdktrace.NewBatchSpanProcessor(exp), c.ServiceName), nil
}

// NewProviderWith builds a TracerProvider over a span processor (tests pass
// a syncer over an in-memory exporter) that honours WithIDs.
func NewProviderWith(sp sdktrace.SpanProcessor, service string) *sdktrace.TracerProvider {
	if service == "" {
		service = "tollgate"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		res = resource.Default()
	}
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithIDGenerator(IDGenerator()), sdktrace.WithResource(res))
}
