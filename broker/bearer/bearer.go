// Package bearer issues, verifies and revokes the per-identity bearer
// tokens HTTP callers present to the gateway (the A2A ingress, the model
// and tool gateways): "Authorization: Bearer <token>".
//
// A token is bound to one registered identity, expires, and can be
// revoked by its id. It is "tgb1.<claims>.<mac>": the claims (identity,
// token id, issue and expiry times) in unpadded base64url JSON, and an
// HMAC-SHA256 over "tgb1." and the claims with the gateway's token key.
// Only the gateway (and whoever holds its key file, such as 'tollgate
// agent token') can mint one; no token is shared between identities.
package bearer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// prefix starts every token; it names the format's version.
const prefix = "tgb1."

// KeySize is the size of a token key in bytes.
const KeySize = 32

// Errors Verify and FromRequest return. Each says why a caller is
// refused; none carries the token.
var (
	// ErrMissing: the request has no bearer token.
	ErrMissing = errors.New("bearer: no bearer token (Authorization: Bearer <token>)")
	// ErrMalformed: the token is not one of this format.
	ErrMalformed = errors.New("bearer: malformed token")
	// ErrSignature: the token was not minted with this gateway's key.
	ErrSignature = errors.New("bearer: token not issued by this gateway")
	// ErrExpired: the token is past its expiry.
	ErrExpired = errors.New("bearer: token expired")
	// ErrRevoked: the token's id was revoked.
	ErrRevoked = errors.New("bearer: token revoked")
)

// Claims are what a token asserts.
type Claims struct {
	// Subject is the identity the token is bound to.
	Subject string `json:"sub"`
	// ID names the token, for revocation.
	ID string `json:"jti"`
	// IssuedAt and ExpiresAt are Unix seconds.
	IssuedAt  int64 `json:"iat"`
	ExpiresAt int64 `json:"exp"`
}

// Expires returns when the token expires.
func (c Claims) Expires() time.Time { return time.Unix(c.ExpiresAt, 0).UTC() }

// Keeper mints and checks tokens with one key and holds the set of
// revoked token ids. It is safe for concurrent use.
type Keeper struct {
	key []byte
	now func() time.Time

	mu      sync.RWMutex
	revoked map[string]struct{}
}

// Option tunes a Keeper.
type Option func(*Keeper)

// WithClock sets the clock expiry is checked against (tests).
func WithClock(now func() time.Time) Option { return func(k *Keeper) { k.now = now } }

// New returns a Keeper for key (KeySize bytes; see GenerateKey).
func New(key []byte, opts ...Option) (*Keeper, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("bearer: key has %d bytes, want %d", len(key), KeySize)
	}
	k := &Keeper{key: append([]byte(nil), key...), now: time.Now, revoked: map[string]struct{}{}}
	for _, o := range opts {
		o(k)
	}
	return k, nil
}

// GenerateKey returns a fresh random token key.
func GenerateKey() []byte {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return key
}

// MaxTTL bounds a token's lifetime.
const MaxTTL = 366 * 24 * time.Hour

// Issue mints a token for subject (a registered identity's id) valid for
// ttl (at most MaxTTL).
func (k *Keeper) Issue(subject string, ttl time.Duration) (string, Claims, error) {
	if err := schemas.CheckPrincipalID(subject); err != nil {
		return "", Claims{}, fmt.Errorf("bearer: %w", err)
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", Claims{}, fmt.Errorf("bearer: ttl %s is not between 0 and %s", ttl, MaxTTL)
	}
	now := k.now()
	c := Claims{Subject: subject, ID: schemas.NewID(), IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix()}
	raw, err := json.Marshal(c)
	if err != nil {
		return "", Claims{}, fmt.Errorf("bearer: encode claims: %w", err)
	}
	body := prefix + base64.RawURLEncoding.EncodeToString(raw)
	return body + "." + base64.RawURLEncoding.EncodeToString(k.mac(body)), c, nil
}

func (k *Keeper) mac(body string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// maxTokenLen bounds what Verify reads.
const maxTokenLen = 1024

// Verify checks a token: minted with this key, not expired, not revoked.
// The errors wrap ErrMalformed, ErrSignature, ErrExpired or ErrRevoked.
// Whether the subject is still a registered, enabled identity is the
// caller's to check.
func (k *Keeper) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissing
	}
	if len(token) > maxTokenLen || !strings.HasPrefix(token, prefix) {
		return Claims{}, ErrMalformed
	}
	i := strings.LastIndexByte(token, '.')
	body, sig := token[:i], token[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(got, k.mac(body)) {
		return Claims{}, ErrSignature
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, prefix))
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil || !schemas.ValidPrincipalID(c.Subject) || c.ID == "" {
		return Claims{}, ErrMalformed
	}
	if !k.now().Before(c.Expires()) {
		return c, fmt.Errorf("%w at %s", ErrExpired, c.Expires().Format(time.RFC3339))
	}
	k.mu.RLock()
	_, gone := k.revoked[c.ID]
	k.mu.RUnlock()
	if gone {
		return c, fmt.Errorf("%w (id %s)", ErrRevoked, c.ID)
	}
	return c, nil
}

// Revoke revokes the tokens with these ids.
func (k *Keeper) Revoke(ids ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, id := range ids {
		k.revoked[id] = struct{}{}
	}
}

// SetRevoked replaces the set of revoked token ids (a config reload).
func (k *Keeper) SetRevoked(ids []string) {
	m := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	k.mu.Lock()
	k.revoked = m
	k.mu.Unlock()
}

// FromRequest returns the bearer token of an HTTP request's Authorization
// header, or ErrMissing.
func FromRequest(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", ErrMissing
	}
	return strings.TrimSpace(tok), nil
}
