package projections_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
)

// A projector keeps ClickHouse up to date with the ledger until stopped.
// It migrates the database at start.
func ExampleProjector() {
	var l *ledger.Ledger // the gateway's ledger (gateway.Gateway.Ledger)
	p, err := projections.New(l, projections.Config{
		DSN:      "clickhouse://127.0.0.1:19000/tollgate",
		Consumer: broker.ProjectorConsumer,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		log.Fatal(err)
	}
	// ... serve ...
	stop, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Stop(stop); err != nil {
		log.Fatal(err)
	}
	fmt.Println("projected", p.Info().Events, "events")
}

// The reports read the projection: here, what each agent spent in the last
// day.
func ExampleReader_Cost() {
	ctx := context.Background()
	r, err := projections.NewReader(ctx, projections.Config{DSN: "clickhouse://127.0.0.1:19000/tollgate"})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	rows, err := r.Cost(ctx, projections.ByAgent, projections.Filter{Since: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range rows {
		fmt.Printf("%s: %d hops, %d tokens, $%.4f\n", c.Key, c.Hops, c.Tokens, c.CostUSD)
	}
}
