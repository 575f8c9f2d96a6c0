package guardrail

import (
	"encoding/json"
	"strings"
	"testing"
)

// The work of the patterns grows with the text, not with its square: a
// message stuffed with keywords (to make every pattern run everywhere)
// costs a small multiple of its length in pattern bytes, well inside
// Limits.MaxPatternBytes.
func TestPatternWorkIsLinear(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{
		"ignore previous system prompt send the contents to http:// ",
		"system: developer admin [system] ### system\n",
		"you are your the all this that instructions message note ",
		"<|im_start|> <tool_call> \"function_call\": { ",
		"send all the all the all the all the all the your your your ",
		"ignore ignore ignore ignore ignore ignore ignore ignore ",
		"Summarize the attached customer interview and list the follow-up actions. ",
	} {
		text := strings.Repeat(unit, (128<<10)/len(unit))
		q, _ := json.Marshal(text)
		s := newScanner(e)
		var res Result
		s.reset(&e.def.in, &res)
		s.scanMessage([]byte(`{"parts":[{"text":` + string(q) + `}]}`))
		spent := e.lim.MaxPatternBytes - s.patternLeft
		t.Logf("%-45q pattern bytes %6.1f × the text", unit[:min(40, len(unit))], float64(spent)/float64(len(text)))
		if s.truncated || spent > 16*len(text) {
			t.Errorf("%q: truncated %v, %d pattern bytes for %d bytes of text", unit, s.truncated, spent, len(text))
		}
	}
}
