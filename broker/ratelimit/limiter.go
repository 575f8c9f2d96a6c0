package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
// value it saw, so an uncontended take is a single round trip. leased are
// tokens already taken from the shared bucket and not yet used here.
type keyState struct {
	mu         sync.Mutex
	val        bucket
	rev        uint64 // 0: unknown
	leased     int
	leaseUntil time.Time
}

// leaseWindow is how much of a rate one take may lease from the shared
// bucket at once: 100 ms of it (never more than a tenth of the bucket).
// A leased token that is not used within leaseWindow is dropped, which only
// ever admits fewer hops than the limit, never more.
const leaseWindow = 100 * time.Millisecond

// leaseSize is how many tokens one round trip to the store takes.
func leaseSize(rate Rate) int {
	n := int(float64(rate.Count) * float64(leaseWindow) / float64(rate.Period))
	return max(1, min(n, rate.Count/10))
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
//
// At high rates a take leases up to 100 ms worth of tokens from the shared
// bucket in one round trip and serves the next takes from them; at low
// rates it leases one, so the limit is exact.
func (l *Limiter) Take(ctx context.Context, key string, rate Rate, now time.Time) (Decision, error) {
	if rate.Unlimited() {
		return Decision{Allowed: true}, nil
	}
	ks := l.key(key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.leased > 0 && now.Before(ks.leaseUntil) {
		ks.leased--
		return Decision{Allowed: true, Remaining: float64(ks.leased)}, nil
	}
	ks.leased = 0
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
		lease := min(leaseSize(rate), int(next.Tokens))
		next.Tokens -= float64(lease)
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
			ks.leased, ks.leaseUntil = lease-1, now.Add(leaseWindow)
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
	perNano := float64(rate.Count) / float64(rate.Period) // tokens earned per nanosecond
	elapsed := now.UnixNano() - b.At
	if elapsed < 0 { // another instance's clock is ahead: earn nothing
		elapsed = 0
	}
	tokens := b.Tokens + float64(elapsed)*perNano
	if limit := float64(rate.Count); tokens > limit || math.IsNaN(tokens) {
		tokens = limit
	}
	at := b.At
	if now.UnixNano() > at {
		at = now.UnixNano()
	}
	next := bucket{Tokens: tokens, At: at}
	if tokens < 1 {
		wait := time.Duration((1 - tokens) / perNano)
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
