// Package tools serves tool hops (action call_tool on Tool::"<id>") over
// MCP, with github.com/modelcontextprotocol/go-sdk.
//
// Each governed tool is a registered identity of type tool, mapped to one
// tool of a configured MCP server. An agent calls it like any other
// target: an invoke whose A2A message carries the call's arguments in a
// data part (CallMessage), so the call passes the same enforcer as an
// agent hop — policy, limits, budget, guardrails on the arguments, the
// ledger. The Bridge consumes the tool identities' deliveries, calls the
// MCP server (streamable HTTP) and replies with the tool's result and the
// call's cost; a result from a server or tool marked untrusted taints the
// hop, so policy can keep it from reaching a privileged agent.
//
// The Front is the MCP endpoint agents that speak MCP use: per calling
// agent it lists the tools policy can permit, and governs each tools/call
// as a hop submitted on the agent's behalf.
package tools
