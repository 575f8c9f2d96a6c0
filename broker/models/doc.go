// Package models serves model hops (action call_model on Model::"<id>").
//
// A model is a registered identity of type model. An agent calls it like
// any other target: an invoke whose A2A message carries an OpenAI chat
// completions request in a data part (ChatMessage), so the call passes the
// same enforcer as an agent hop — policy, limits, the run's budget,
// guardrails on the prompt, the ledger. The Bridge consumes the model's
// deliveries as the model identity, calls the upstream configured for it
// (an OpenAI-compatible endpoint, streaming or not), and replies with the
// completion and its usage, priced from the model's price table: the reply
// closes the hop and settles the run's budget, and the guardrails scan the
// completion on its way back.
//
// Streams are accounted from the upstream's final usage chunk
// (stream_options.include_usage) or, when the upstream sends none, by
// counting: a stream is never recorded as free. A stream is cut when it
// outgrows the tokens reserved for it at admission or when the gateway
// cancels the hop (the run was halted).
package models
