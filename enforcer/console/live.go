package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
)

// Timing of the live feed.
const (
	// liveTick is how often the runs that changed are summarized and
	// sent: many events of one run in a tick make one update.
	liveTick = 250 * time.Millisecond
	// livePerTick bounds the runs summarized in one tick; the rest wait.
	livePerTick = 64
	// heartbeat keeps idle event streams open through proxies.
	heartbeat = 15 * time.Second
	// subscriberBuffer is how many updates a slow browser may lag before
	// its stream is closed (it reconnects and reloads).
	subscriberBuffer = 256
)

// live feeds the event streams: one ordered consumer of the LEDGER stream
// (headers only: the subject names the run) marks the runs that changed,
// and every tick their summaries, folded from the ledger by
// runtree.Summary, go to every subscriber.
type live struct {
	l   *ledger.Ledger
	log *slog.Logger

	mu     sync.Mutex
	dirty  map[string]bool
	subs   map[chan []byte]bool
	cancel context.CancelFunc
	done   chan struct{}
}

func newLive(l *ledger.Ledger, log *slog.Logger) *live {
	return &live{l: l, log: log, dirty: map[string]bool{}, subs: map[chan []byte]bool{}}
}

func (lv *live) start(ctx context.Context) error {
	js := lv.l.JetStream()
	c, err := js.OrderedConsumer(ctx, lv.l.StreamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{lv.l.Subjects().LedgerAll()},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		HeadersOnly:    true,
		NamePrefix:     "console",
	})
	if err != nil {
		return fmt.Errorf("console live feed: %w", err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		if run, ok := lv.l.Subjects().LedgerRun(m.Subject()); ok {
			lv.mu.Lock()
			lv.dirty[run] = true
			lv.mu.Unlock()
		}
	})
	if err != nil {
		return fmt.Errorf("console live feed: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	lv.cancel, lv.done = cancel, make(chan struct{})
	go func() {
		defer close(lv.done)
		defer cc.Stop()
		t := time.NewTicker(liveTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				lv.closeAll()
				return
			case <-t.C:
				lv.flush(ctx)
			}
		}
	}()
	return nil
}

func (lv *live) stop() {
	if lv.cancel != nil {
		lv.cancel()
		<-lv.done
	}
}

// flush summarizes the runs that changed and sends them.
func (lv *live) flush(ctx context.Context) {
	lv.mu.Lock()
	var runs []string
	for run := range lv.dirty {
		if len(runs) == livePerTick {
			break
		}
		runs = append(runs, run)
		delete(lv.dirty, run)
	}
	listening := len(lv.subs) > 0
	lv.mu.Unlock()
	if !listening {
		return
	}
	for _, run := range runs {
		sum, err := summarize(ctx, lv.l, run)
		if err != nil {
			lv.log.Warn("console live feed: summarize run", "run", run, "err", err)
			continue
		}
		b, err := json.Marshal(row(sum))
		if err != nil {
			continue
		}
		lv.broadcast(fmt.Appendf(nil, "event: run\ndata: %s\n\n", b))
	}
}

// summarize folds a run's events into its summary.
func summarize(ctx context.Context, l *ledger.Ledger, run string) (*runtree.Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	sum := runtree.NewSummary(run)
	err := l.Scan(ctx, run, func(r ledger.Record) error {
		ev := r.Event
		return sum.Add(&ev, r.StreamSeq)
	})
	return sum, err
}

func (lv *live) broadcast(msg []byte) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	for ch := range lv.subs {
		select {
		case ch <- msg:
		default: // too slow: close it; the browser reconnects and reloads
			delete(lv.subs, ch)
			close(ch)
		}
	}
}

func (lv *live) subscribe() chan []byte {
	ch := make(chan []byte, subscriberBuffer)
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.subs[ch] = true
	return ch
}

func (lv *live) unsubscribe(ch chan []byte) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.subs[ch] {
		delete(lv.subs, ch)
		close(ch)
	}
}

func (lv *live) closeAll() {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	for ch := range lv.subs {
		delete(lv.subs, ch)
		close(ch)
	}
}

// events is the event stream (text/event-stream): an "run" event with the
// run's RunRow every time a run's ledger grows.
func (s *Server) events(w http.ResponseWriter, r *http.Request, ss *session) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ch := s.live.subscribe()
	defer s.live.unsubscribe(ch)
	if _, err := fmt.Fprint(w, "retry: 2000\nevent: hello\ndata: {}\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(msg); err != nil {
				return
			}
		case <-t.C:
			if !s.stillValid(r, ss) {
				return // logged out or expired: the stream ends with the session
			}
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return
		}
	}
}
