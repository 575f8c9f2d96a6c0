package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections/internal/store"
)

// Lag is how far a projector's consumer trails the LEDGER stream, as the
// broker sees it.
type Lag struct {
	// Consumer is the durable consumer asked about; Exists is false when
	// no projector ever ran under that name.
	Consumer string `json:"consumer"`
	Exists   bool   `json:"exists"`
	// StreamLastSeq is the sequence of the newest ledger event.
	StreamLastSeq uint64 `json:"stream_last_seq"`
	// StreamEvents is how many events LEDGER holds.
	StreamEvents uint64 `json:"stream_events"`
	// AckFloor is the sequence up to which every event is projected and
	// acked.
	AckFloor uint64 `json:"ack_floor"`
	// Pending counts events not yet delivered to the projector; AckPending
	// those delivered and not yet acked (being written, or waiting to be
	// delivered again after a crash).
	Pending    uint64 `json:"pending"`
	AckPending uint64 `json:"ack_pending"`
	// Behind is the age of the oldest event not yet projected; zero when
	// caught up.
	Behind time.Duration `json:"behind_ns"`
}

// Events is the number of ledger events not yet projected.
func (l Lag) Events() uint64 { return l.Pending + l.AckPending }

// ConsumerLag asks the broker how far the named projector consumer trails
// the ledger's stream. The name is required (ErrNoConsumer).
func ConsumerLag(ctx context.Context, l *ledger.Ledger, consumer string) (Lag, error) {
	lag := Lag{Consumer: consumer}
	if consumer == "" {
		return lag, ErrNoConsumer
	}
	stream, err := l.JetStream().Stream(ctx, l.StreamName())
	if err != nil {
		return lag, fmt.Errorf("ledger stream: %w", err)
	}
	si, err := stream.Info(ctx)
	if err != nil {
		return lag, fmt.Errorf("ledger stream: %w", err)
	}
	lag.StreamLastSeq, lag.StreamEvents = si.State.LastSeq, si.State.Msgs
	ci, err := l.JetStream().Consumer(ctx, l.StreamName(), consumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		lag.Pending = si.State.Msgs
	case err != nil:
		return lag, fmt.Errorf("projector consumer %s: %w", consumer, err)
	default:
		info := ci.CachedInfo()
		lag.Exists = true
		lag.AckFloor, lag.Pending, lag.AckPending = info.AckFloor.Stream, info.NumPending, uint64(info.NumAckPending)
	}
	if lag.Events() > 0 {
		oldest := max(lag.AckFloor+1, si.State.FirstSeq)
		if m, err := stream.GetMsg(ctx, oldest); err == nil {
			lag.Behind = max(time.Since(m.Time), 0)
		}
	}
	return lag, nil
}

// Status is the state of a projection: its ClickHouse side and, when a bus
// is given, its lag.
type Status struct {
	Database string `json:"database"`
	// ServerVersion is ClickHouse's version.
	ServerVersion string `json:"server_version"`
	// SchemaVersion is the last migration applied; LatestSchema the last
	// this build knows.
	SchemaVersion int `json:"schema_version"`
	LatestSchema  int `json:"latest_schema"`
	// Events, Hops, Runs and Breaches count the distinct rows of the tables.
	Events   uint64 `json:"events"`
	Hops     uint64 `json:"hops"`
	Runs     uint64 `json:"runs"`
	Breaches uint64 `json:"breaches"`
	// ProjectedStreamSeq is the highest LEDGER sequence in the events table.
	ProjectedStreamSeq uint64 `json:"projected_stream_seq"`
	// Lag is the consumer's lag; nil when no bus was given.
	Lag *Lag `json:"lag,omitempty"`
}

// GetStatus reports the projection's state in ClickHouse and, when l is
// not nil, the lag of cfg's consumer (required then: ErrNoConsumer).
func GetStatus(ctx context.Context, l *ledger.Ledger, cfg Config) (*Status, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DSN, cfg.Database)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	s := &Status{Database: cfg.Database}
	if s.ServerVersion, err = st.ServerVersion(); err != nil {
		return nil, err
	}
	all, err := store.Migrations()
	if err != nil {
		return nil, err
	}
	s.LatestSchema = all[len(all)-1].Version
	if s.SchemaVersion, err = st.SchemaVersion(ctx); err != nil {
		return nil, err
	}
	if s.SchemaVersion > 0 {
		for _, c := range []struct {
			table string
			n     *uint64
		}{{store.TableEvents, &s.Events}, {store.TableHops, &s.Hops}, {store.TableRuns, &s.Runs}, {store.TableBreaches, &s.Breaches}} {
			if err := st.QueryRow(ctx, "SELECT count() FROM {db}."+c.table+" FINAL", []any{c.n}); err != nil {
				return nil, err
			}
		}
		if err := st.QueryRow(ctx, "SELECT max(stream_seq) FROM {db}.events", []any{&s.ProjectedStreamSeq}); err != nil {
			return nil, err
		}
	}
	if l != nil {
		lag, err := ConsumerLag(ctx, l, cfg.Consumer)
		if err != nil {
			return nil, err
		}
		s.Lag = &lag
	}
	return s, nil
}
