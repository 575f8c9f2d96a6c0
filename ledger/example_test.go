package ledger_test

import (
	"bytes"
	"fmt"
	"log"
	"time"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// A run's events are sealed into a hash chain, folded into the run's
// state, and verified. Editing a stored event breaks the chain at that
// event.
func Example() {
	const run = "run-1"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	usage := &schemas.Usage{InputTokens: 1200, OutputTokens: 300, CostUSD: 0.015}
	events := []schemas.Event{
		schemas.EventOf(run, schemas.EventRunStarted, "", at, &schemas.RunStarted{
			RootHopID: "h1", Caller: "tomas", CallerType: schemas.TypeUser, OnBehalfOf: "tomas"}),
		schemas.EventOf(run, schemas.EventHopAllowed, "h1", at, &schemas.HopDecision{
			Kind: schemas.KindInvoke, From: "tomas", To: "orchestrator", Action: schemas.ActionInvoke}),
		schemas.EventOf(run, schemas.EventHopCompleted, "h1", at.Add(time.Second), &schemas.HopCompleted{
			Status: schemas.StateCompleted, By: "orchestrator", Usage: usage}),
		schemas.EventOf(run, schemas.EventRunCompleted, "", at.Add(time.Second), &schemas.RunCompleted{
			Status: schemas.StateCompleted, Hops: 1, Tokens: usage.Tokens(), CostUSD: usage.CostUSD}),
	}

	// Seal each event onto the chain, as Ledger.Append does before storing.
	var head ledger.Head
	recs := make([]ledger.Record, len(events))
	for i := range events {
		raw, err := ledger.Seal(&events[i], head)
		if err != nil {
			log.Fatal(err)
		}
		head = ledger.Head{Seq: events[i].Seq, Hash: events[i].Hash}
		recs[i] = ledger.Record{Event: events[i], Raw: raw}
	}

	// Fold them: what the run is, as the enforcer and every reader see it.
	st, err := ledger.Fold(run, recs)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d hop, %d tokens, $%.3f\n", st.RunStatus(), st.Allowed, st.Spent.Tokens, st.Spent.CostUSD)

	// Verify the stored bytes (no keys: signatures are not checked).
	fmt.Println(ledger.Verify(run, recs, nil).Chain)

	// Someone lowers the spend in the stored event.
	recs[2].Raw = bytes.Replace(recs[2].Raw, []byte(`"input_tokens":1200`), []byte(`"input_tokens":12`), 1)
	fmt.Println(ledger.Verify(run, recs, nil).Err())
	// Output:
	// completed: 1 hop, 1500 tokens, $0.015
	// intact
	// ledger: event 3 (hop.completed hop h1): content does not match its hash (the event was edited)
}
