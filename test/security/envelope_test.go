package security_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/schemas"
)

// TestUsageBounds: a reply (by the hop's own target, a member of the run)
// or an invoke whose usage or estimate overflows, is negative, over the
// bounds, or not a number Go reads, is denied as malformed, and the run's
// budget is unchanged; the honest reply that follows is counted.
func TestUsageBounds(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		tk := mallory.delegatedTo(t)
		// The reply as JSON, with usage written as given.
		replyWith := func(usage string) []byte {
			b, err := tk.reply("x", nil).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			obj := strings.TrimSuffix(string(b), "}") + `,"usage":` + usage + "}"
			return mallory.signRaw(t, obj)
		}
		invokeWith := func(estimate string) []byte {
			env := mallory.envelope(schemas.KindInvoke)
			env.RunID, env.ParentHopID, env.To, env.Message, env.HopKey = tk.Run, tk.Hop, "research", message("x"), schemas.NewID()
			env.HopID = env.DerivedHopID()
			b, err := env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return mallory.signRaw(t, strings.TrimSuffix(string(b), "}")+`,"estimate":`+estimate+"}")
		}
		max := int64(schemas.MaxTokens)
		cases := []struct {
			name string
			body []byte
		}{
			{"TwoHugeTokenCounts", replyWith(`{"input_tokens":9223372036854775807,"output_tokens":9223372036854775807}`)},
			{"TokenCountsThatWrap", replyWith(fmt.Sprintf(`{"input_tokens":%d,"output_tokens":%d}`, 1<<62, 1<<62))},
			{"TokensJustOverBound", replyWith(fmt.Sprintf(`{"input_tokens":%d}`, max+1))},
			{"NegativeTokens", replyWith(`{"input_tokens":-1000000}`)},
			{"TokensOutOfInt64", replyWith(`{"output_tokens":1e30}`)},
			{"CostOverflowsFloat", replyWith(`{"cost_usd":1e999}`)},
			{"CostNaNLiteral", replyWith(`{"cost_usd":NaN}`)},
			{"CostInfinityLiteral", replyWith(`{"cost_usd":Infinity}`)},
			{"CostAsString", replyWith(`{"cost_usd":"NaN"}`)},
			{"NegativeCost", replyWith(`{"cost_usd":-5}`)},
			{"CostOverBound", replyWith(`{"cost_usd":1e10}`)},
			{"EstimateHugeTokens", invokeWith(`{"input_tokens":9223372036854775807,"output_tokens":9223372036854775807}`)},
			{"EstimateNegativeCost", invokeWith(`{"cost_usd":-1}`)},
			{"EstimateOverflowingCost", invokeWith(`{"cost_usd":1e400}`)},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := g.ops.verified(t, tk.Run)
				mallory.wantDenied(t, tk.Run, tc.body, nil, schemas.ReasonMalformed, "")
				after := g.ops.verified(t, tk.Run)
				if s := spent(t, after); s.Tokens != 0 || s.CostUSD != 0 {
					t.Fatalf("the run's spend is %+v", s)
				}
				if countEvents(after, schemas.EventHopCompleted) != countEvents(before, schemas.EventHopCompleted) ||
					countEvents(after, schemas.EventHopAllowed) != countEvents(before, schemas.EventHopAllowed) {
					t.Fatal("a hop was closed or opened")
				}
			})
		}
		t.Run("HonestReplyCounted", func(t *testing.T) {
			tk.finish(t, &schemas.Usage{InputTokens: 100, OutputTokens: 20, CostUSD: 0.25})
			var recs = g.ops.verified(t, tk.Run)
			brokertest.Eventually(t, 10*time.Second, "the run completes", func() bool {
				recs = g.ops.verified(t, tk.Run)
				return recs[len(recs)-1].Event.Type == schemas.EventRunCompleted
			})
			if s := spent(t, recs); s.Tokens != 120 || s.CostUSD != 0.25 {
				t.Fatalf("spend %+v, want 120 tokens and $0.25", s)
			}
			g.cast.legit(t)
		})
	})
}

// TestStrictEnvelopes: envelopes that parsers could read differently
// (duplicate keys, case-variant keys, invalid UTF-8), and envelopes that
// lie about their sender, are denied; nothing reaches the target they
// name, no run starts.
func TestStrictEnvelopes(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		eve := g.attacker(t, "eve") // a user: her root invokes start runs
		mallory := g.attacker(t, "mallory")
		// rootInvoke is eve's root invoke at the writer as compact JSON
		// (signature left out), and its run.
		rootInvoke := func() (string, string) {
			env := eve.envelope(schemas.KindInvoke)
			env.RunID, env.To, env.Message = schemas.NewID(), "writer", message("draft")
			env.HopID = env.DerivedHopID()
			b, err := env.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return env.RunID, string(b)
		}
		cases := []struct {
			name   string
			edit   func(obj string) string
			signed bool
			reason schemas.Reason
			says   string
		}{
			{"DuplicateFrom", func(o string) string { return strings.Replace(o, `"from":"eve"`, `"from":"eve","from":"tomas"`, 1) }, true, schemas.ReasonMalformed, "duplicate"},
			{"DuplicateTo", func(o string) string {
				return strings.Replace(o, `"to":"writer"`, `"to":"writer","to":"orchestrator"`, 1)
			}, true, schemas.ReasonMalformed, "duplicate"},
			{"CaseVariantFrom", func(o string) string { return strings.Replace(o, `"from":"eve"`, `"from":"eve","From":"tomas"`, 1) }, true, schemas.ReasonMalformed, "case variant"},
			{"CaseVariantTo", func(o string) string {
				return strings.Replace(o, `"to":"writer"`, `"to":"writer","TO":"orchestrator"`, 1)
			}, true, schemas.ReasonMalformed, "case variant"},
			{"CaseVariantInEstimate", func(o string) string {
				return strings.TrimSuffix(o, "}") + `,"estimate":{"input_tokens":1,"Input_Tokens":999999999}}`
			}, true, schemas.ReasonMalformed, "case variant"},
			{"InvalidUTF8", func(o string) string { return strings.Replace(o, `"draft"`, "\"dr\xffaft\"", 1) }, true, schemas.ReasonMalformed, "UTF-8"},
			{"InvalidUTF8InKey", func(o string) string { return strings.TrimSuffix(o, "}") + ",\"fr\xc3om\":\"tomas\"}" }, true, schemas.ReasonMalformed, ""},
			{"FromAnotherIdentity", func(o string) string { return strings.Replace(o, `"from":"eve"`, `"from":"tomas"`, 1) }, true, schemas.ReasonIdentity, "published by"},
			{"Unsigned", func(o string) string { return o }, false, schemas.ReasonIdentity, ""},
			{"SignatureOfOtherBytes", func(o string) string { return o }, true, schemas.ReasonIdentity, "signature"},
			{"UnknownVersion", func(o string) string {
				return strings.Replace(o, fmt.Sprintf(`"v":%d`, schemas.EnvelopeVersion), fmt.Sprintf(`"v":%d`, schemas.EnvelopeVersion+1), 1)
			}, true, "", ""},
			{"NotAnObject", func(o string) string { return "[" + o + "]" }, false, schemas.ReasonMalformed, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				run, obj := rootInvoke()
				body := []byte(tc.edit(obj))
				if tc.signed {
					body = eve.signRaw(t, string(body))
				}
				if tc.name == "SignatureOfOtherBytes" {
					// A valid signature of other bytes, pasted on.
					_, other := rootInvoke()
					sig := eve.signRaw(t, other)
					body = []byte(strings.TrimSuffix(obj, "}") + string(sig[strings.LastIndex(string(sig), `,"signature"`):]))
				}
				before := g.ops.snapshot(t)
				eve.wantDenied(t, run, body, nil, tc.reason, tc.says)
				if own := g.ops.onlyOwnRejections(t, before, "eve"); len(own) != 1 {
					t.Fatalf("%d rejection entries, want 1", len(own))
				}
				if recs := g.ops.read(t, run); len(recs) != 0 {
					t.Fatalf("run %s started", run)
				}
			})
		}
		t.Run("OversizedSubmission", func(t *testing.T) {
			before := g.ops.snapshot(t)
			body := []byte(`{"pad":"` + strings.Repeat("x", 300<<10) + `"}`)
			mallory.wantDenied(t, schemas.NewID(), body, nil, schemas.ReasonMalformed, "")
			own := g.ops.onlyOwnRejections(t, before, "mallory")
			if len(own) != 1 {
				t.Fatalf("%d rejection entries", len(own))
			}
			rec := g.ops.read(t, own[0])[0]
			if d := decisionOf(t, rec); len(rec.Raw) > 4096 || d.Size != len(body) || len(d.Raw) > 1024 {
				t.Fatalf("a %d-byte submission left a %d-byte entry (size %d, raw %d)", len(body), len(rec.Raw), d.Size, len(d.Raw))
			}
		})
		t.Run("HeadersAimedAtStreams", func(t *testing.T) {
			// Headers the stream acts on: a rollup would purge the whole
			// work queue, an expected stream names another stream.
			for _, h := range []nats.Header{
				{"Nats-Rollup": []string{"all"}},
				{"Nats-Rollup": []string{"sub"}},
				{"Nats-Expected-Stream": []string{"LEDGER"}},
				{"Nats-TTL": []string{"1s"}},
				{"Nats-Schedule": []string{"@at 2030-01-01T00:00:00Z"}, "Nats-Schedule-Target": []string{"tg.ledger.x"}},
			} {
				m := &nats.Msg{Subject: g.subj.Submit("mallory", schemas.NewID()), Data: []byte(`{"attack":"header"}`), Header: h}
				ack, err := mallory.js.PublishMsg(testCtx(t, 5*time.Second), m)
				if h.Get("Nats-Rollup") != "" && err == nil {
					t.Fatalf("SUBMIT took a rollup (%v)", h)
				}
				if err == nil {
					// Stored as an ordinary submission: it must be denied like one.
					mallory.denial(t, ack.Sequence)
				}
			}
			g.streamsIntact(t)
			g.cast.legit(t)
		})
		t.Run("LegitimateRunAfter", func(t *testing.T) { g.cast.legit(t) })
	})
}
