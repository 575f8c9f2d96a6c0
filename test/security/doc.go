// Package security is Tollgate's bus-isolation suite (issue 9): it builds
// the tollgate binary, runs `tollgate serve` as an OS process, once with
// its embedded NATS server and once on an external nats-server process,
// and attacks it with raw nats.go connections that each hold one
// identity's key. Every case asserts the safe outcome from outside (the
// streams are still there, the ledger verifies and is unchanged, nothing
// was written where the attacker aimed, the victim's message is still
// delivered) and that a legitimate run still gets through afterwards.
//
// docs/security.md lists every case with the test that covers it. The
// package has no code of its own; the tests are in package security_test.
package security
