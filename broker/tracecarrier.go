package broker

import "github.com/nats-io/nats.go"

// TraceParentHeader is the NATS header that carries the W3C trace context.
const TraceParentHeader = "traceparent"

// HeaderCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier. Unlike
// propagation.HeaderCarrier over http.Header, it keeps header names as
// written, so the header stays "traceparent" on the wire.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if vs := c[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
