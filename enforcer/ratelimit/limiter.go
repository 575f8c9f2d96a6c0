package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// bucket is the stored state of one key: tokens left at a time.
type bucket struct {
	Tokens float64 `json:"t"`
	At     int64   `json:"at"` // unix nanoseconds
}

// Limiter takes tokens from per-key buckets kept in a KV bucket. It is safe
// for concurrent use.
type Limiter struct {
	kv jetstream.KeyValue

	mu   sync.Mutex
	keys map[string]*keyState
}

// keyState serialises this instance's takes of one key and caches the last
// value it saw, so an uncontended take is a single round trip.
type keyState struct {
	mu  sync.Mutex
	val bucket
	rev uint64 // 0: unknown
}

// New returns a limiter over kv (see broker.ProvisionRateBucket).
func New(kv jetstream.KeyValue) *Limiter {
	return &Limiter{kv: kv, keys: map[string]*keyState{}}
}

// Decision is the outcome of a take.
type Decision struct {
	Allowed bool
	// Remaining is the number of tokens left after the take.
	Remaining float64
	// RetryAfter is how long until a token is available, when denied.
	RetryAfter time.Duration
}

// maxAttempts bounds compare-and-set retries under contention.
const maxAttempts = 16

// Take takes one token from key's bucket, which holds rate.Count tokens and
// refills at rate.Count per rate.Period. now is the caller's clock. An
// unlimited rate always allows without touching the store.
func (l *Limiter) Take(ctx context.Context, key string, rate Rate, now time.Time) (Decision, error) {
	if rate.Unlimited() {
		return Decision{Allowed: true}, nil
	}
	ks := l.key(key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if ks.rev == 0 {
			if err := l.load(ctx, key, ks, rate, now); err != nil {
				return Decision{}, err
			}
		}
		next, d := refill(ks.val, rate, now)
		if !d.Allowed {
			return d, nil // nothing to write: the bucket is only read
		}
		next.Tokens--
		d.Remaining = next.Tokens
		b, err := json.Marshal(next)
		if err != nil {
			return Decision{}, err
		}
		var rev uint64
		if ks.rev == newKey {
			rev, err = l.kv.Create(ctx, key, b)
		} else {
			rev, err = l.kv.Update(ctx, key, b, ks.rev)
		}
		if err == nil {
			ks.val, ks.rev = next, rev
			return d, nil
		}
		if !isConflict(err) {
			return Decision{}, fmt.Errorf("rate limit %s: %w", key, err)
		}
		ks.rev = 0 // another instance wrote first: read again
	}
	return Decision{}, fmt.Errorf("rate limit %s: too much contention", key)
}

// newKey marks a key that does not exist in the store yet.
const newKey = ^uint64(0)

func (l *Limiter) load(ctx context.Context, key string, ks *keyState, rate Rate, now time.Time) error {
	e, err := l.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		ks.val, ks.rev = bucket{Tokens: float64(rate.Count), At: now.UnixNano()}, newKey
		return nil
	case err != nil:
		return fmt.Errorf("rate limit %s: %w", key, err)
	}
	var b bucket
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		// A damaged value is replaced with a full bucket.
		b = bucket{Tokens: float64(rate.Count), At: now.UnixNano()}
	}
	ks.val, ks.rev = b, e.Revision()
	return nil
}

// refill adds the tokens earned since the bucket's time, capped at the
// bucket's size, and says whether one can be taken.
func refill(b bucket, rate Rate, now time.Time) (bucket, Decision) {
	perToken := rate.Period / time.Duration(rate.Count)
	elapsed := now.UnixNano() - b.At
	if elapsed < 0 { // another instance's clock is ahead: earn nothing
		elapsed = 0
	}
	tokens := b.Tokens + float64(elapsed)/float64(perToken)
	if max := float64(rate.Count); tokens > max {
		tokens = max
	}
	at := b.At
	if now.UnixNano() > at {
		at = now.UnixNano()
	}
	next := bucket{Tokens: tokens, At: at}
	if tokens < 1 {
		wait := time.Duration((1 - tokens) * float64(perToken))
		return next, Decision{Allowed: false, Remaining: tokens, RetryAfter: wait}
	}
	return next, Decision{Allowed: true, Remaining: tokens}
}

func (l *Limiter) key(k string) *keyState {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := l.keys[k]
	if ks == nil {
		ks = &keyState{}
		l.keys[k] = ks
	}
	return ks
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
