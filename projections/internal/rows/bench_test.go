package rows

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// BenchmarkProject is the fold alone, on events decoded beforehand: what
// the projector does per event between decoding it and inserting its rows.
// The runs are those of BenchmarkIngest in ../..: 11 events each, a
// started run, four allowed hops, a denied cycle, four replies with usage,
// completion; a batch of rows is handed over every 20,000 events.
func BenchmarkProject(b *testing.B) {
	const runs = 10000
	x := NewDecoder()
	var evs []Decoded
	for i := range runs {
		for _, r := range syntheticRun(b, fmt.Sprintf("run-%05d", i)) {
			d, err := x.Decode(r.Raw, r.StreamSeq)
			if err != nil {
				b.Fatal(err)
			}
			d.Record.Raw = nil
			evs = append(evs, d)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f, err := NewFolder(func(context.Context, string, func(ledger.Record) error) error { return ledger.ErrNoRun }, runs)
		if err != nil {
			b.Fatal(err)
		}
		batch := NewBatch()
		for i, d := range evs {
			if err := f.Project(ctx, d, batch); err != nil {
				b.Fatal(err)
			}
			if i%20000 == 19999 {
				batch = NewBatch()
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

// BenchmarkDecodeProject is what the projector's reader does per event,
// short of receiving it: decode the stored bytes and fold them into rows.
func BenchmarkDecodeProject(b *testing.B) {
	const runs = 10000
	var raw []ledger.Record
	for i := range runs {
		for _, r := range syntheticRun(b, fmt.Sprintf("run-%05d", i)) {
			raw = append(raw, ledger.Record{Raw: r.Raw, StreamSeq: r.StreamSeq})
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		x := NewDecoder()
		f, err := NewFolder(func(context.Context, string, func(ledger.Record) error) error { return ledger.ErrNoRun }, runs)
		if err != nil {
			b.Fatal(err)
		}
		batch := NewBatch()
		for i, r := range raw {
			d, err := x.Decode(r.Raw, r.StreamSeq)
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Project(ctx, d, batch); err != nil {
				b.Fatal(err)
			}
			if i%20000 == 19999 {
				batch = NewBatch()
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(raw)), "ns/event")
}

// syntheticRun is a governed run as BenchmarkIngest's: tomas -> the
// orchestrator, which delegates to three workers; research's re-invocation
// of the orchestrator is denied; every hop replies with usage.
func syntheticRun(t testing.TB, run string) []ledger.Record {
	rb := &runBuilder{t: t, run: run, at: t0}
	digest := func(hop string) string { return ledger.Digest([]byte(run + hop)) }
	env := []byte(`{"v":1,"kind":"invoke","message":{"kind":"message","parts":[{"kind":"text","text":"Find sources on governance for agent-to-agent traffic and summarise them."}]},"signature":"x2Q3b5v0Q9r8n6m4k2j1h9g7f5d3s1a0z8x6c4v2b0n9m7k5j3h1g9f7d5s3a1q9w7e5r3t1y9u7i5o3p1a9s7d5f3g1h9"}`)
	dec := func(from, to string, depth int, ancestry []string, hop string) *schemas.HopDecision {
		return &schemas.HopDecision{Kind: schemas.KindInvoke, From: from, FromTeam: "platform", To: to, ToTeam: "research",
			Action: schemas.ActionInvoke, Depth: depth, Ancestry: ancestry, OnBehalfOf: "tomas",
			PolicyIDs: []string{"agents-delegate-to-agents"}, Deadline: t0.Add(time.Minute), Envelope: env, Size: len(env), Digest: digest(hop)}
	}
	root := run + "-h0"
	rb.add(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: root, Caller: "tomas", CallerType: schemas.TypeUser,
		OnBehalfOf: "tomas", Workflow: "research-brief", Limits: &schemas.RunLimits{MaxDelegationDepth: 5, MaxEdgeRepeats: 20}})
	rb.add(schemas.EventHopAllowed, root, dec("tomas", "orchestrator", 0, []string{"tomas"}, root))
	workers := []string{"research", "writer", "critic"}
	for i, w := range workers {
		hop := fmt.Sprintf("%s-h%d", run, i+1)
		d := dec("orchestrator", w, 1, []string{"tomas", "orchestrator"}, hop)
		d.ParentHopID = root
		rb.add(schemas.EventHopAllowed, hop, d)
	}
	denied := dec("research", "orchestrator", 2, []string{"tomas", "orchestrator", "research"}, run+"-hx")
	denied.ParentHopID, denied.Cycle, denied.Reason, denied.Message = run+"-h1", true, schemas.ReasonPolicy, "forbidden by policy"
	rb.add(schemas.EventHopDenied, run+"-hx", denied)
	for i, w := range workers {
		hop := fmt.Sprintf("%s-h%d", run, i+1)
		rb.add(schemas.EventHopCompleted, hop, &schemas.HopCompleted{Status: schemas.StateCompleted, By: w,
			Usage: &schemas.Usage{InputTokens: 2400, OutputTokens: 600, CostUSD: 0.03}, LatencyMS: 10, Envelope: env, Digest: digest(hop + "r")})
	}
	rb.add(schemas.EventHopCompleted, root, &schemas.HopCompleted{Status: schemas.StateCompleted, By: "orchestrator",
		Usage: &schemas.Usage{InputTokens: 1200, OutputTokens: 300, CostUSD: 0.015}, LatencyMS: 60, Envelope: env, Digest: digest(root + "r")})
	rb.add(schemas.EventRunCompleted, "", &schemas.RunCompleted{Status: schemas.StateCompleted, Hops: 4, Tokens: 8300, CostUSD: 0.083, DurationMS: 33})
	return rb.recs
}
