package console

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Failed logins are limited per client address: a burst of loginBurst,
// then one per loginEvery. Guessing a token or a seed is not feasible;
// this keeps a flood of guesses from filling the logs and the CPU.
const (
	loginBurst = 10
	loginEvery = 6 * time.Second
	// maxClients bounds the addresses remembered; past it the memory is
	// reset (every address starts afresh).
	maxClients = 10000
)

// loginThrottle counts failed logins per client address.
type loginThrottle struct {
	mu sync.Mutex
	by map[string]*rate.Limiter
}

func newLoginThrottle() *loginThrottle { return &loginThrottle{by: map[string]*rate.Limiter{}} }

func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (t *loginThrottle) limiter(r *http.Request) *rate.Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := clientOf(r)
	l := t.by[c]
	if l == nil {
		if len(t.by) >= maxClients {
			t.by = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		t.by[c] = l
	}
	return l
}

// blocked reports whether the client has failed too often to try now.
func (t *loginThrottle) blocked(r *http.Request) bool { return t.limiter(r).Tokens() < 1 }

// failed counts a failed login.
func (t *loginThrottle) failed(r *http.Request) { t.limiter(r).Allow() }
