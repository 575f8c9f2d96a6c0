package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
)

// BenchmarkFileStoreSync measures what the embedded server's durability
// choice costs (nats.sync; docs/reliability.md): 512-byte publishes to a
// file-stored stream, one at a time as the ledger appends them (sync) and
// pipelined as deliveries go out (async), with the server's default fsync
// every 2 minutes, every second, and on every write.
//
//	go test -run '^$' -bench BenchmarkFileStoreSync -benchtime 3s ./broker
func BenchmarkFileStoreSync(b *testing.B) {
	for _, c := range []struct {
		name     string
		always   bool
		interval time.Duration
	}{{"default-2m", false, 0}, {"interval-1s", false, time.Second}, {"always", true, 0}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			emb, err := broker.StartEmbedded(ctx, broker.EmbeddedConfig{DataDir: b.TempDir(), NoListen: true, SyncAlways: c.always, SyncInterval: c.interval})
			if err != nil {
				b.Fatal(err)
			}
			defer emb.Shutdown()
			nc, err := broker.Connect(broker.ConnectConfig{InProcess: emb})
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage}); err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 512)
			b.Run("sync", func(b *testing.B) {
				for i := range b.N {
					if _, err := js.Publish(ctx, fmt.Sprintf("s.%d", i%1000), data); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("async", func(b *testing.B) {
				futures := make([]jetstream.PubAckFuture, 0, 256)
				for i := range b.N {
					f, err := js.PublishMsgAsync(&nats.Msg{Subject: fmt.Sprintf("s.%d", i%1000), Data: data})
					if err != nil {
						b.Fatal(err)
					}
					futures = append(futures, f)
					if len(futures) == cap(futures) || i == b.N-1 {
						for _, f := range futures {
							select {
							case <-f.Ok():
							case err := <-f.Err():
								b.Fatal(err)
							}
						}
						futures = futures[:0]
					}
				}
			})
		})
	}
}
