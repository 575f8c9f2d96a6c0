package tools

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Kinds of the data parts that carry a tool call and its result, under
// the metadata key MetaKey.
const (
	CallKind   = "mcp.tools.call"
	ResultKind = "mcp.tools.result"
	MetaKey    = "tollgate.kind"
)

// ErrCall means a tool call message is unusable; its text says why.
var ErrCall = errors.New("tools: bad tool call")

// CallMessage is a tool call as an A2A message: one data part holding the
// arguments, marked CallKind. It is what an agent sends a tool.
func CallMessage(arguments map[string]any) *a2a.Message {
	if arguments == nil {
		arguments = map[string]any{}
	}
	return a2a.NewMessage(a2a.MessageRoleUser, dataPart(map[string]any{"arguments": arguments}, CallKind))
}

// ArgumentsFrom finds the call's arguments in an A2A message.
func ArgumentsFrom(m *a2a.Message) (map[string]any, error) {
	if d, ok := dataOf(m, CallKind); ok {
		switch args := d["arguments"].(type) {
		case nil:
			return map[string]any{}, nil
		case map[string]any:
			return args, nil
		default:
			return nil, fmt.Errorf("%w: arguments must be an object", ErrCall)
		}
	}
	return nil, fmt.Errorf("%w: the message has no data part marked %s=%s", ErrCall, MetaKey, CallKind)
}

// ResultMessage is a tool's result as an A2A message: its text contents as
// text parts, and the whole MCP result in a data part.
func ResultMessage(r *mcp.CallToolResult) (*a2a.Message, error) {
	var parts []*a2a.Part
	for _, c := range r.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, a2a.NewTextPart(t.Text))
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("tools: encode result: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("tools: encode result: %w", err)
	}
	parts = append(parts, dataPart(obj, ResultKind))
	return a2a.NewMessage(a2a.MessageRoleAgent, parts...), nil
}

// ResultFrom finds the MCP result in a tool's answer.
func ResultFrom(m *a2a.Message) (*mcp.CallToolResult, error) {
	if d, ok := dataOf(m, ResultKind); ok {
		b, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("tools: result: %w", err)
		}
		var r mcp.CallToolResult
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("tools: result: %w", err)
		}
		return &r, nil
	}
	return nil, errors.New("tools: the answer carries no MCP result")
}

// dataPart is a data part holding v, marked kind.
func dataPart(v map[string]any, kind string) *a2a.Part {
	p := a2a.NewDataPart(v)
	p.Metadata = map[string]any{MetaKey: kind}
	return p
}

// dataOf returns the object of the first data part of m marked kind.
func dataOf(m *a2a.Message, kind string) (map[string]any, bool) {
	if m == nil {
		return nil, false
	}
	for _, p := range m.Parts {
		if p == nil || p.Metadata[MetaKey] != kind {
			continue
		}
		if d, ok := p.Data().(map[string]any); ok {
			return d, true
		}
	}
	return nil, false
}
