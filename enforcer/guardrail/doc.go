// Package guardrail scans the A2A messages the enforcer governs for
// prompt injection and leaked secrets, and decides what to do with them.
//
// An Engine is built once per configuration (New) and is safe for
// concurrent use. Engine.Scan takes one message (an invoke's A2A message,
// or a reply's Message or Task, v0.3 or v1.0 JSON) and returns a Result:
// the findings, the verdict (allow, flag, redact, block) and, for
// redaction, the redacted message and the digests of both bodies. Scan
// does no I/O and never fails; what is wrong with a message is a finding.
//
// Every string of the message is scanned, keys included: text parts, data
// parts at any depth, file names, URIs and text file contents, artifacts,
// history, status messages and metadata. Each string is normalised before
// matching (NFKC, case folding, invisible characters removed, look-alike
// letters folded) and what it hides is decoded and scanned too (base64,
// hex, rot13, URL and HTML-entity encoding, HTML and markdown comments,
// letter spacing, Unicode tag characters), within the bounds of Limits.
//
// The rules come in shipped packs: instruction-override, role-spoofing,
// exfiltration, hidden-instructions and tool-smuggling (Engine.Rules
// lists them), plus the scanner pack (truncated, malformed) and the
// external pack (an external checker's findings). A keyword prefilter
// (Aho-Corasick) selects the few patterns a text can match; patterns are
// RE2 expressions, run anchored where their keywords start.
//
// What a finding does is configured per agent, per direction (Inbound for
// an invoke to the agent, Outbound for the agent's reply) and per rule or
// pack. An external classifier can be consulted through a Checker (the
// HTTPChecker speaks the JSON protocol in docs/guardrails.md) with
// Engine.Check, failing open or closed per agent.
package guardrail
