package tools

import (
	"sync"
	"time"

	"github.com/tollgate/tollgate/broker/ratelimit"
)

// bucket is a token bucket of one tool's calls.
type bucket struct {
	rate ratelimit.Rate

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(r ratelimit.Rate) *bucket {
	return &bucket{rate: r, tokens: float64(r.Count)}
}

// take takes a token at now; false when none is left.
func (b *bucket) take(now time.Time) bool {
	if b == nil || b.rate.Unlimited() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens += float64(b.rate.Count) * float64(now.Sub(b.last)) / float64(b.rate.Period)
		b.tokens = min(b.tokens, float64(b.rate.Count))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
