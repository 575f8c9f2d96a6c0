package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/schemas"
)

// RejectedPrefix starts the run token of the ledger entry of a submission
// that belonged to no run ("_rejected-<submit seq>-<digest>", one event,
// a hop.denied): there was no run to chain it to.
const RejectedPrefix = "_rejected-"

// Subjects names the ledger's subjects; broker.Subjects implements it.
type Subjects interface {
	// Ledger returns the subject of a run's ledger.
	Ledger(run string) string
	// LedgerAll returns the wildcard of every run's ledger.
	LedgerAll() string
	// LedgerRun returns the run of a ledger subject.
	LedgerRun(subject string) (string, bool)
}

// Ledger appends to and reads run ledgers in one JetStream stream.
type Ledger struct {
	js       jetstream.JetStream
	stream   string
	subjects Subjects

	mu     sync.Mutex
	handle jetstream.Stream // looked up once: every lookup is an API call
}

// New returns a ledger over the named stream (see broker.Provision).
func New(js jetstream.JetStream, stream string, subjects Subjects) *Ledger {
	return &Ledger{js: js, stream: stream, subjects: subjects}
}

// StreamName returns the name of the ledger's stream.
func (l *Ledger) StreamName() string { return l.stream }

// Subjects returns the names of the ledger's subjects.
func (l *Ledger) Subjects() Subjects { return l.subjects }

// JetStream returns the JetStream context the ledger reads and appends
// with, for readers that consume the stream themselves (the projector).
func (l *Ledger) JetStream() jetstream.JetStream { return l.js }

// Record is an event as stored: decoded, with its wire form and position.
type Record struct {
	Event     schemas.Event
	Raw       []byte
	StreamSeq uint64
}

// Append seals ev onto the run's chain at head and stores it, expecting the
// run's last stream sequence to be head.StreamSeq (0 for a new run). It
// returns the new head and the stored record.
//
// Retrying the very same append is harmless: when the server refuses it
// because the run moved on, the run's last event is compared with ours by
// hash. A different event at the same position is ErrConflict, and the
// caller must reload the run.
func (l *Ledger) Append(ctx context.Context, head Head, ev schemas.Event) (Head, Record, error) {
	if ev.RunID == "" {
		return head, Record{}, errors.New("ledger: append: event has no run id")
	}
	wire, err := Seal(&ev, head)
	if err != nil {
		return head, Record{}, err
	}
	msg := nats.NewMsg(l.subjects.Ledger(ev.RunID))
	msg.Data = wire
	ack, err := publishWait(ctx, l.js, msg,
		jetstream.WithExpectLastSequencePerSubject(head.StreamSeq),
		jetstream.WithExpectStream(l.stream))
	if err != nil {
		seq, ours := l.lastIsOurs(ctx, ev.RunID, ev.Hash, err)
		if !ours {
			if isWrongLastSequence(err) {
				return head, Record{}, fmt.Errorf("append %s to run %s at seq %d: %w", ev.Type, ev.RunID, ev.Seq, ErrConflict)
			}
			return head, Record{}, fmt.Errorf("append %s to run %s: %w", ev.Type, ev.RunID, err)
		}
		ack = &jetstream.PubAck{Sequence: seq}
	}
	rec := Record{Event: ev, Raw: wire, StreamSeq: ack.Sequence}
	return Head{Seq: ev.Seq, Hash: ev.Hash, StreamSeq: ack.Sequence}, rec, nil
}

// lastIsOurs resolves the retry trap: a repeated append is refused with
// "wrong last sequence" when its first attempt was in fact stored (the ack
// was lost). It is ours when the run's last event has our hash.
func (l *Ledger) lastIsOurs(ctx context.Context, run, hash string, pubErr error) (uint64, bool) {
	if !isWrongLastSequence(pubErr) {
		return 0, false
	}
	s, err := l.streamHandle(ctx)
	if err != nil {
		return 0, false
	}
	m, err := s.GetLastMsgForSubject(ctx, l.subjects.Ledger(run))
	if err != nil {
		return 0, false
	}
	if _, last, ok := schemas.SplitLastMember(m.Data, "hash"); !ok || last != hash {
		return 0, false
	}
	return m.Sequence, true
}

func (l *Ledger) streamHandle(ctx context.Context) (jetstream.Stream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handle != nil {
		return l.handle, nil
	}
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return nil, fmt.Errorf("ledger stream %s: %w", l.stream, err)
	}
	l.handle = s
	return s, nil
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// IsWrongLastSequence reports whether err is the server refusing a publish
// whose expected last subject sequence did not match (10071, or 10164 on a
// replicated stream).
func IsWrongLastSequence(err error) bool { return isWrongLastSequence(err) }

// Head returns the run's chain head; an empty Head when the run does not
// exist.
func (l *Ledger) Head(ctx context.Context, run string) (Head, error) {
	s, err := l.streamHandle(ctx)
	if err != nil {
		return Head{}, err
	}
	m, err := s.GetLastMsgForSubject(ctx, l.subjects.Ledger(run))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Head{}, nil
	}
	if err != nil {
		return Head{}, fmt.Errorf("ledger head of run %s: %w", run, err)
	}
	ev, err := schemas.DecodeEvent(m.Data)
	if err != nil {
		return Head{}, fmt.Errorf("ledger head of run %s (stream seq %d): %w", run, m.Sequence, err)
	}
	return Head{Seq: ev.Seq, Hash: ev.Hash, StreamSeq: m.Sequence}, nil
}

// Get returns the event stored at a stream sequence.
func (l *Ledger) Get(ctx context.Context, streamSeq uint64) (Record, error) {
	s, err := l.streamHandle(ctx)
	if err != nil {
		return Record{}, err
	}
	m, err := s.GetMsg(ctx, streamSeq)
	if err != nil {
		return Record{}, fmt.Errorf("ledger event at stream seq %d: %w", streamSeq, err)
	}
	ev, err := schemas.DecodeEvent(m.Data)
	if err != nil {
		return Record{}, fmt.Errorf("ledger event at stream seq %d: %w", streamSeq, err)
	}
	return Record{Event: *ev, Raw: m.Data, StreamSeq: m.Sequence}, nil
}

// Next returns the run's first event stored after streamSeq; a zero Record
// when there is none.
func (l *Ledger) Next(ctx context.Context, run string, streamSeq uint64) (Record, error) {
	s, err := l.streamHandle(ctx)
	if err != nil {
		return Record{}, err
	}
	m, err := s.GetMsg(ctx, streamSeq+1, jetstream.WithGetMsgSubject(l.subjects.Ledger(run)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Record{}, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("ledger event of run %s after stream seq %d: %w", run, streamSeq, err)
	}
	ev, err := schemas.DecodeEvent(m.Data)
	if err != nil {
		return Record{}, fmt.Errorf("ledger event at stream seq %d: %w", m.Sequence, err)
	}
	return Record{Event: *ev, Raw: m.Data, StreamSeq: m.Sequence}, nil
}

// Read returns every event of the run in order, as far as the run's last
// event at the time of the call. A run without events returns ErrNoRun.
// Events are decoded but not verified; call Verify for that.
func (l *Ledger) Read(ctx context.Context, run string) ([]Record, error) {
	var out []Record
	err := l.Scan(ctx, run, func(r Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// Scan calls fn with every event of the run in order, as Read returns them,
// without holding them all in memory. It stops at the first error fn returns.
func (l *Ledger) Scan(ctx context.Context, run string, fn func(Record) error) error {
	head, err := l.Head(ctx, run)
	if err != nil {
		return err
	}
	if head.Empty() {
		return fmt.Errorf("run %s: %w", run, ErrNoRun)
	}
	errDone := errors.New("done")
	err = l.direct(ctx, directGet{NextFor: l.subjects.Ledger(run), Batch: directBatch}, func(m directMsg) error {
		rec := Record{Raw: m.Data, StreamSeq: m.Seq}
		ev, err := schemas.DecodeEvent(rec.Raw)
		if err != nil {
			return fmt.Errorf("read run %s at stream seq %d: %w", run, rec.StreamSeq, err)
		}
		rec.Event = *ev
		if err := fn(rec); err != nil {
			return err
		}
		if rec.StreamSeq >= head.StreamSeq {
			return errDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return fmt.Errorf("read run %s: %w", run, err)
	}
	return nil
}

// ScanAll reads the events of every run in one pass over the ledger stream,
// in the order the stream holds them (each run's in order, runs
// interleaved), and calls fn with each event's run, stored bytes and
// stream sequence. It starts at the first event the stream stored at or
// after from (the stream's clock), or at the beginning when from is zero,
// and stops at the stream's last event at the time of the call. It does not
// decode the events. It stops at the first error fn returns.
func (l *Ledger) ScanAll(ctx context.Context, from time.Time, fn func(run string, raw []byte, streamSeq uint64) error) error {
	_, err := l.ScanFrom(ctx, 0, from, fn)
	return err
}

// ScanFrom is ScanAll for a reader that follows the stream: it reads the
// events stored after stream sequence after (and, when from is not zero,
// at or after from on the stream's clock) up to the stream's last event at
// the time of the call, and returns that last sequence, which the next
// call passes as after to read only what was appended since. After an
// error, fn has seen the events up to where the read stopped.
func (l *Ledger) ScanFrom(ctx context.Context, after uint64, from time.Time, fn func(run string, raw []byte, streamSeq uint64) error) (uint64, error) {
	if after > 0 && !from.IsZero() {
		return after, errors.New("read the ledger: ScanFrom takes a sequence or a time, not both")
	}
	s, err := l.streamHandle(ctx)
	if err != nil {
		return after, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return after, fmt.Errorf("read the ledger: %w", err)
	}
	last := info.State.LastSeq
	if last <= after {
		return max(last, after), nil
	}
	req := directGet{NextFor: l.subjects.LedgerAll(), Batch: directBatch, Seq: after + 1}
	if !from.IsZero() {
		req.StartTime, req.Seq = &from, 0
	}
	errDone := errors.New("done")
	err = l.direct(ctx, req, func(m directMsg) error {
		if m.Seq > last {
			return errDone
		}
		if run, ok := l.subjects.LedgerRun(m.Subject); ok {
			if err := fn(run, m.Data, m.Seq); err != nil {
				return err
			}
		}
		if m.Seq == last {
			return errDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return after, fmt.Errorf("read the ledger: %w", err)
	}
	return last, nil
}

// Load reads and folds a run into its State. A run without events yields an
// empty State and no error.
func (l *Ledger) Load(ctx context.Context, run string) (*State, error) {
	st := NewState(run)
	err := l.Scan(ctx, run, st.Apply)
	if errors.Is(err, ErrNoRun) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// publishWait publishes through the asynchronous path and waits for the
// acknowledgement: under load it costs less than a request per append, and
// many shards share a connection.
func publishWait(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f, err := js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, err
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
