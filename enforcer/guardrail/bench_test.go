package guardrail_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/enforcer/guardrail"
)

// benchMessage builds an A2A v0.3 message of about size bytes: text parts
// of benign corpus sentences (every 37th, round the corpus), one data part, and for a malicious message
// one corpus injection after every third benign sentence. Benign
// sentences the engine flags are left out (the injections
// cycle through every family, language and encoding).
func benchMessage(tb testing.TB, e *guardrail.Engine, size int, malicious bool) json.RawMessage {
	tb.Helper()
	var benign, bad []string
	for _, s := range loadCorpus(tb, corpusFile) {
		if s.Label == "malicious" {
			bad = append(bad, s.Text)
			continue
		}
		q, _ := json.Marshal(s.Text)
		// Leave out the corpus's known false positives.
		if e.Scan(guardrail.Request{Message: json.RawMessage(`{"text":` + string(q) + `}`)}).Verdict == guardrail.Allow {
			benign = append(benign, s.Text)
		}
	}
	var parts []string
	total, b, m := 200, 0, 0
	for i := 0; total < size; i++ {
		// A stride through the corpus mixes its kinds of benign text
		// (trigger words, code reviews, other languages, encodings).
		text := benign[(b*37)%len(benign)]
		b++
		if malicious && i%4 == 3 {
			text = bad[m%len(bad)]
			m++
		}
		q, _ := json.Marshal(text)
		part := `{"kind":"text","text":` + string(q) + `}`
		total += len(part) + 1
		parts = append(parts, part)
	}
	msg := `{"kind":"message","messageId":"m-1","role":"user","contextId":"c-1","parts":[` + strings.Join(parts, ",") +
		`,{"kind":"data","data":{"ticket":4411,"tags":["billing","q3"],"owner":"research"}}]}`
	if !json.Valid([]byte(msg)) {
		tb.Fatal("invalid benchmark message")
	}
	return json.RawMessage(msg)
}

// BenchmarkScan reports the cost of scanning benign and malicious
// messages of 1 KB, 16 KB and 256 KB (MB/s from b.SetBytes; ns/op divided
// by the size in KB is the cost per KB).
func BenchmarkScan(b *testing.B) {
	e, err := guardrail.New(guardrail.Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"benign", "malicious"} {
		for _, size := range []int{1 << 10, 16 << 10, 256 << 10} {
			msg := benchMessage(b, e, size, kind == "malicious")
			req := guardrail.Request{Direction: guardrail.Inbound, From: "a", To: "b", Message: msg}
			if res := e.Scan(req); (res.Verdict == guardrail.Allow) != (kind == "benign") || res.Truncated {
				b.Fatalf("%s %d: verdict %s truncated %v %v", kind, size, res.Verdict, res.Truncated, res.RuleIDs())
			}
			b.Run(fmt.Sprintf("%s/%dKB", kind, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					e.Scan(req)
				}
			})
		}
	}
}

// BenchmarkUnmarshal is the baseline measured beside BenchmarkScan:
// decoding the same benign messages with encoding/json into an any.
func BenchmarkUnmarshal(b *testing.B) {
	e, err := guardrail.New(guardrail.Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1 << 10, 16 << 10, 256 << 10} {
		msg := benchMessage(b, e, size, false)
		b.Run(fmt.Sprintf("benign/%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				var v any
				if err := json.Unmarshal(msg, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkScanText is one benign 1 KB text part, the common case.
func BenchmarkScanText(b *testing.B) {
	e, err := guardrail.New(guardrail.Config{})
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("Summarize the attached customer interview and list the follow-up actions for the sales team. ", 11)[:1000]
	q, _ := json.Marshal(text)
	msg := json.RawMessage(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":` + string(q) + `}]}`)
	req := guardrail.Request{Direction: guardrail.Inbound, To: "b", Message: msg}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		e.Scan(req)
	}
}
