package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections/internal/rows"
	"github.com/tollgate/tollgate/projections/internal/store"
	"github.com/tollgate/tollgate/schemas"
)

// pipeline turns LEDGER messages into batches of rows and writes them. The
// live projector and Rebuild share it. add belongs to one goroutine (the
// reader: decoder and folder are not safe for concurrent use), write to
// one other (the writer); they share no mutable state.
type pipeline struct {
	cfg      Config
	subjects ledger.Subjects
	folder   *rows.Folder
	decoder  *rows.Decoder
	log      *slog.Logger
	batches  uint64
}

func newPipeline(cfg Config, l *ledger.Ledger) (*pipeline, error) {
	folder, err := rows.NewFolder(l.Scan, cfg.MaxRuns)
	if err != nil {
		return nil, err
	}
	return &pipeline{cfg: cfg, subjects: l.Subjects(), folder: folder, decoder: rows.NewDecoder(), log: cfg.Logger}, nil
}

// batch is a batch being filled or written: its rows, and the messages to
// ack once ClickHouse has them (none when replaying without acks).
type batch struct {
	rows *rows.Batch
	msgs []jetstream.Msg
	info BatchInfo
	// skipped counts events that cannot be projected (acked all the same).
	skipped int
	// lastStored is when the broker stored the batch's last event.
	lastStored time.Time
	// pending is how many events the consumer had not delivered yet when
	// the batch's last event was delivered.
	pending uint64
}

func newBatch() *batch { return &batch{rows: rows.NewBatch()} }

// add folds one LEDGER message into b. Reading a run back from the ledger
// is retried until ctx ends; only then does add fail. An event that can
// never be projected is logged, counted and skipped.
func (p *pipeline) add(ctx context.Context, b *batch, m jetstream.Msg, ack bool) error {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("ledger message without metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	if b.info.Events == 0 {
		b.info.FirstStreamSeq = seq
	}
	b.info.Events++
	b.info.LastStreamSeq, b.lastStored, b.pending = seq, meta.Timestamp, meta.NumPending
	if ack {
		b.msgs = append(b.msgs, m)
	}
	d, err := p.decoder.Decode(m.Data(), seq)
	if err == nil {
		if run, ok := p.subjects.LedgerRun(m.Subject()); !ok || run != d.Event.RunID {
			err = fmt.Errorf("%w: event of run %q stored under subject %s", schemas.ErrMalformed, d.Event.RunID, m.Subject())
		}
	}
	if err == nil {
		err = p.project(ctx, d, b.rows)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rows.ErrData) || errors.Is(err, schemas.ErrMalformed) || errors.Is(err, schemas.ErrVersion):
		b.skipped++
		p.log.Error("ledger event cannot be projected; skipped", "stream_seq", seq, "subject", m.Subject(), "err", err)
		return nil
	default:
		return err
	}
}

// project folds one record, retrying while the ledger cannot be read.
func (p *pipeline) project(ctx context.Context, d rows.Decoded, into *rows.Batch) error {
	return retry(ctx, p.log, "read the ledger", -1, func() error {
		err := p.folder.Project(ctx, d, into)
		if errors.Is(err, rows.ErrData) {
			return permanent{err}
		}
		return err
	})
}

// write inserts b's rows, retrying a failed insert (attempts < 0: until
// ctx ends). A hook's error is returned at once.
func (p *pipeline) write(ctx context.Context, st *store.Store, b *batch, attempts int) error {
	p.batches++
	b.info.Number = p.batches
	if b.rows.Empty() {
		return nil
	}
	var after func(string) error
	if hook := p.cfg.Hooks.AfterInsert; hook != nil {
		after = func(table string) error {
			if err := hook(table, b.info); err != nil {
				return permanent{fmt.Errorf("after insert into %s: %w", table, err)}
			}
			return nil
		}
	}
	return retry(ctx, p.log, "insert into ClickHouse", attempts, func() error {
		return st.Insert(ctx, b.rows, after)
	})
}

// permanent marks an error that retrying cannot mend.
type permanent struct{ err error }

func (e permanent) Error() string { return e.err.Error() }
func (e permanent) Unwrap() error { return e.err }

// retry calls fn until it succeeds, returns a permanent error, has been
// tried attempts times (attempts < 0: no bound) or ctx ends, backing off
// from 100 ms to 5 s between tries.
func retry(ctx context.Context, log *slog.Logger, what string, attempts int, fn func() error) error {
	wait := 100 * time.Millisecond
	for try := 1; ; try++ {
		err := fn()
		var perm permanent
		switch {
		case err == nil:
			return nil
		case errors.As(err, &perm):
			return perm.err
		case attempts >= 0 && try >= attempts:
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err)
		}
		log.Warn("retrying", "what", what, "try", try, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
