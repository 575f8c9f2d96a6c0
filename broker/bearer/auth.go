package bearer

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tollgate/tollgate/broker"
)

// Errors Authenticate returns besides those of Verify and FromRequest.
var (
	// ErrUnknownIdentity: the token's identity is not registered (any more).
	ErrUnknownIdentity = errors.New("bearer: the token's identity is not registered")
	// ErrDisabled: the token's identity is disabled.
	ErrDisabled = errors.New("bearer: the token's identity is disabled")
)

// Authenticator authenticates HTTP callers: a valid bearer token of an
// identity that is registered and enabled in the directory in force.
type Authenticator struct {
	Keeper *Keeper
	// Directory returns the identities in force (it changes on reload).
	Directory func() *broker.Directory
}

// Authenticate returns the identity r's bearer token is bound to. The
// errors wrap ErrMissing, ErrMalformed, ErrSignature, ErrExpired,
// ErrRevoked, ErrUnknownIdentity or ErrDisabled.
func (a *Authenticator) Authenticate(r *http.Request) (*broker.Identity, Claims, error) {
	tok, err := FromRequest(r)
	if err != nil {
		return nil, Claims{}, err
	}
	c, err := a.Keeper.Verify(tok)
	if err != nil {
		return nil, c, err
	}
	id, ok := a.Directory().Get(c.Subject)
	switch {
	case !ok:
		return nil, c, fmt.Errorf("%w: %q", ErrUnknownIdentity, c.Subject)
	case id.Disabled:
		return nil, c, fmt.Errorf("%w: %q", ErrDisabled, c.Subject)
	}
	return id, c, nil
}
