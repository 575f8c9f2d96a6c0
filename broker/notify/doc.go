// Package notify takes the gateway's alerts to people: a notifier reads the
// ALERTS stream (tg.alert.>) and delivers each alert to the configured
// sinks — a generic HTTP webhook (JSON, optionally HMAC-signed), a
// Slack-compatible incoming webhook, or a command — through a watermill
// router, one handler per sink, each on its own durable consumer so that a
// failing sink never makes another receive an alert twice.
//
// The router's middleware does what it is good at: Recoverer (a panicking
// sink is an error, not a crash), Throttle (bounds the rate at which a sink
// is called), PoisonQueue (an alert a sink still refuses after every retry
// goes to the dead-letter subject tg.deadletter.alerts.<sink>, kept in the
// DEADLETTER stream, which `tollgate alerts dead` lists), Retry (backoff)
// and Timeout (each attempt is bounded).
package notify
