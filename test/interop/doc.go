// Package interop holds the A2A interoperability suites: unmodified A2A
// clients and servers built with the official SDKs (a2a-go v2 and v0.3,
// @a2a-js/sdk under js/) talking to a real gateway through its HTTP
// ingress and bridges. Everything runs for real: an embedded NATS server,
// the gateway's HTTP listener, the SDKs' own HTTP servers and clients.
package interop
