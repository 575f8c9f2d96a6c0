package enforcer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
)

// boundTTL is how long a target's consumer state is reused before it is
// asked again.
const boundTTL = time.Second

// bindings answers whether a target has a consumer bound to its
// deliveries: its durable consumer has pull requests waiting, or
// delivered within the bind window. Only targets with fallbacks are asked,
// and each at most once per boundTTL.
type bindings struct {
	mu   sync.Mutex
	seen map[string]bindingState
}

type bindingState struct {
	bound bool
	at    time.Time
}

func (e *Enforcer) bound(ctx context.Context, target string) (bool, error) {
	now := time.Now()
	e.binds.mu.Lock()
	if b, ok := e.binds.seen[target]; ok && now.Sub(b.at) < boundTTL {
		e.binds.mu.Unlock()
		return b.bound, nil
	}
	e.binds.mu.Unlock()
	cons, err := e.js.Consumer(ctx, e.subjects.Stream(broker.StreamDeliver), broker.AgentConsumer(target))
	bound := false
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return false, fmt.Errorf("consumer of %s: %w", target, err)
	default:
		info, err := cons.Info(ctx)
		if err != nil {
			return false, fmt.Errorf("consumer of %s: %w", target, err)
		}
		last := info.Delivered.Last
		bound = info.NumWaiting > 0 || last != nil && now.Sub(*last) < e.cfg.BindWindow
	}
	e.binds.mu.Lock()
	if e.binds.seen == nil {
		e.binds.seen = map[string]bindingState{}
	}
	e.binds.seen[target] = bindingState{bound: bound, at: now}
	e.binds.mu.Unlock()
	return bound, nil
}
