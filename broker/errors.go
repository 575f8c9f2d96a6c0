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
