package guardrail

// Pack tool-smuggling: a fake tool or function call inside text, in the
// syntax a model or an agent framework would act on: XML tool tags, the
// special tokens of tool-calling chat templates, OpenAI/Anthropic-style
// JSON calls, MCP "tools/call" requests, ReAct "Action:" lines.
// Structured calls inside data parts are reported by the engine itself
// (tool-smuggling/structured-call).

func toolSmugglingRules() []ruleDef {
	return []ruleDef{{
		name:        "xml-tool-call",
		desc:        "XML tool-call markup in text (<tool_call>, <function_calls>, <invoke name=...>, <use_mcp_tool>)",
		sev:         High,
		instruction: true,
		patterns: []string{
			`</?(?:tool_call|tool_calls|tool_use|tool_result|function_call|function_calls|functioncall|tool_code|use_mcp_tool|mcp_tool_call|call_tool|execute_command|run_command|tool_request)(?:\s[^>]{0,200})?>`,
			`<(?:[a-z_]+:)?invoke\s+name~=`,
			`<(?:[a-z_]+:)?parameter\s+name~=`,
			`<function=[a-z_][a-z0-9_.\-]{0,64}>`,
		},
	}, {
		name:        "special-token",
		desc:        "tool-calling special tokens of chat templates (<|tool_call|>, <|python_tag|>, [TOOL_CALLS], to=functions.x)",
		sev:         High,
		instruction: true,
		patterns: []string{
			`<\|(?:tool_call|tool_calls|tool_calls_begin|tool_call_begin|tool_call_end|tool_sep|python_tag|plugin|tool_response|tool_output|function|recipient|call)\|>`,
			`<\|?tool▁(?:calls?▁begin|call▁begin|sep)\|?>`,
			`\[/?(?:tool_calls|tool_call|tool_results|available_tools)\]`,
			`\bto=functions\.[a-z_][a-z0-9_]*`,
		},
	}, {
		name:        "json-function-call",
		desc:        `a JSON function or tool call in text ("function_call": ..., "tool_calls": [...], {"name": ..., "arguments": ...}, "type": "tool_use")`,
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`"(?:function_call|tool_calls|tool_call|tool_use|tool_uses|functioncall)"~:~[\{\[]`,
			`"type"~:~"(?:tool_use|function_call|tool_call|function)"~,~"(?:name|id|function|call_id|input|arguments)"`,
			`\{~"name"~:~"[a-z0-9_.\-]{1,64}"~,~"(?:arguments|args)"~:~[\{"]`,
			`\{~"name"~:~"[a-z0-9_.\-]{1,64}"~,~"input"~:~\{`,
		},
	}, {
		name:        "mcp-call",
		desc:        `an MCP JSON-RPC request in text ("method": "tools/call")`,
		sev:         High,
		instruction: true,
		patterns: []string{
			`"method"~:~"(?:tools/call|tools/list|resources/read|prompts/get|sampling/createmessage)"`,
		},
	}, {
		name:        "react-action",
		desc:        "a ReAct-style tool step in text (Action: tool / Action Input: ...) that an agent loop would execute",
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`(?:^|\n)~action~:~[a-z_][a-z0-9_.\-]{1,64}~\n~action[ _]input~:`,
		},
	}}
}
