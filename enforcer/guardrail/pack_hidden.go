package guardrail

// Pack hidden-instructions: instructions a human reviewer would not see.
// Most of its rules are reported by the engine itself from what
// normalisation and decoding found (zero-width and bidi characters,
// homoglyph words, Unicode tag characters, instructions inside an encoded
// layer or a comment); the patterns here find text hidden by markup.

func hiddenInstructionRules() []ruleDef {
	return []ruleDef{{
		name:        "hidden-markup",
		desc:        "HTML that hides text from a reader (display:none, zero font size, white text) wrapped around instruction words",
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`<[a-z]+[^>]{0,200}style~=~["'][^"']{0,200}(?:display~:~none|visibility~:~hidden|font-size~:~0(?:px|pt|em|rem)?~[;"']|opacity~:~0(?:\.0+)?~[;"']|color~:~(?:white|#fff(?:fff)?|rgba?\(255, ?255, ?255)\b)[^>]{0,100}>[^<]{0,400}(?:ignore|instruction|system prompt|assistant|\bai\b|llm|you must|send (?:the|all|your)|forward|reveal|password|api key)`,
			`<[a-z]+[^>]{0,100}\bhidden\b[^>]{0,100}>[^<]{0,400}(?:ignore|instruction|system prompt|\bai\b|llm|you must|reveal|forward)`,
		},
	}}
}
