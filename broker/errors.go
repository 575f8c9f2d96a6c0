package broker

import "errors"

// Sentinel errors. Callers test them with errors.Is; the errors returned
// wrap them with the key or file concerned.
var (
	// ErrPublicKey means a string is not an nkey user public key
	// ("U..."): ParsePublicKey, and so ReadKeyDir and a Directory's
	// identities, wrap it.
	ErrPublicKey = errors.New("not an nkey user public key")
)

// Errors of the key checks made at connect time (Subjects.CheckOwner).
var (
	// ErrWrongKey means a connection holds another identity's key than
	// the one it was meant to: the error names whose key it is.
	ErrWrongKey = errors.New("wrong key")
	// ErrWhoAmIUnavailable means the server could not say whose key a
	// connection holds.
	ErrWhoAmIUnavailable = errors.New("the server cannot say whose key this is")
)
