package tools

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/a2aproject/a2a-go/a2a"
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
	return a2a.NewMessage(a2a.MessageRoleUser, a2a.DataPart{
		Data:     map[string]any{"arguments": arguments},
		Metadata: map[string]any{MetaKey: CallKind},
	})
}

// ArgumentsFrom finds the call's arguments in an A2A message.
func ArgumentsFrom(m *a2a.Message) (map[string]any, error) {
	if m != nil {
		for _, p := range m.Parts {
			d, ok := p.(a2a.DataPart)
			if !ok || d.Metadata[MetaKey] != CallKind {
				continue
			}
			switch args := d.Data["arguments"].(type) {
			case nil:
				return map[string]any{}, nil
			case map[string]any:
				return args, nil
			default:
				return nil, fmt.Errorf("%w: arguments must be an object", ErrCall)
			}
		}
	}
	return nil, fmt.Errorf("%w: the message has no data part marked %s=%s", ErrCall, MetaKey, CallKind)
}

// ResultMessage is a tool's result as an A2A message: its text contents as
// text parts, and the whole MCP result in a data part.
func ResultMessage(r *mcp.CallToolResult) (*a2a.Message, error) {
	var parts []a2a.Part
	for _, c := range r.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, a2a.TextPart{Text: t.Text})
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
	parts = append(parts, a2a.DataPart{Data: obj, Metadata: map[string]any{MetaKey: ResultKind}})
	return a2a.NewMessage(a2a.MessageRoleAgent, parts...), nil
}

// ResultFrom finds the MCP result in a tool's answer.
func ResultFrom(m *a2a.Message) (*mcp.CallToolResult, error) {
	if m != nil {
		for _, p := range m.Parts {
			d, ok := p.(a2a.DataPart)
			if !ok || d.Metadata[MetaKey] != ResultKind {
				continue
			}
			b, err := json.Marshal(d.Data)
			if err != nil {
				return nil, fmt.Errorf("tools: result: %w", err)
			}
			var r mcp.CallToolResult
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("tools: result: %w", err)
			}
			return &r, nil
		}
	}
	return nil, errors.New("tools: the answer carries no MCP result")
}
