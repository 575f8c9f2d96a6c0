package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// directBatch is how many messages one batched direct get asks for.
const directBatch = 512

// directGet is the request of a batched direct get (nats-server 2.11+).
type directGet struct {
	Seq       uint64     `json:"seq,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MultiLast []string   `json:"multi_last,omitempty"`
}

// directMsg is one message of a direct get's answer.
type directMsg struct {
	Subject string
	Seq     uint64
	Data    []byte
}

// errNoMessages means a direct get matched nothing.
var errNoMessages = errors.New("no message")

// direct reads with batched direct gets on the ledger stream: no consumer
// is created, so reading never touches the stream's consumer limit, and a
// reader whose account may only get messages (an operator's) reads too.
// It calls fn with each message the request matches, in stream order, and
// asks again from where an answer stopped until nothing is pending.
func (l *Ledger) direct(ctx context.Context, req directGet, fn func(directMsg) error) error {
	nc := l.js.Conn()
	subject := apiPrefix(l.js) + "DIRECT.GET." + l.stream
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("direct get: %w", err)
	}
	defer sub.Unsubscribe()
	for {
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		if err := nc.PublishRequest(subject, inbox, body); err != nil {
			return fmt.Errorf("direct get: %w", err)
		}
		pending, last, err := l.readBatch(ctx, sub, fn)
		if errors.Is(err, errNoMessages) || err == nil && pending == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		if len(req.MultiLast) > 0 {
			return nil // a multi-last answer is whole
		}
		req.Seq, req.StartTime = last+1, nil
	}
}

// readBatch reads one batched answer up to its end-of-batch marker and
// returns what the server says is still pending and the last sequence
// sent.
func (l *Ledger) readBatch(ctx context.Context, sub *nats.Subscription, fn func(directMsg) error) (pending, last uint64, err error) {
	for {
		wait := 10 * time.Second
		if d, ok := ctx.Deadline(); ok {
			wait = time.Until(d)
		}
		m, err := sub.NextMsg(wait)
		if err != nil {
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			return 0, 0, fmt.Errorf("direct get: %w", err)
		}
		switch m.Header.Get("Status") {
		case "404":
			return 0, 0, errNoMessages
		case "204": // end of batch
			pending, _ = strconv.ParseUint(m.Header.Get(numPendingHeader), 10, 64)
			return pending, last, nil
		case "":
		default:
			return 0, 0, fmt.Errorf("direct get: status %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("direct get: message without a sequence")
		}
		last = seq
		if err := fn(directMsg{Subject: m.Header.Get(jetstream.SubjectHeader), Seq: seq, Data: m.Data}); err != nil {
			return 0, 0, err
		}
	}
}

// apiPrefix is the JetStream API prefix js sends requests under, with its
// trailing dot.
func apiPrefix(js jetstream.JetStream) string {
	p := js.Options().APIPrefix
	if p == "" {
		return jetstream.DefaultAPIPrefix
	}
	if !strings.HasSuffix(p, ".") {
		p += "."
	}
	return p
}

// numPendingHeader counts what a batched direct get left for the next
// request.
const numPendingHeader = "Nats-Num-Pending"
