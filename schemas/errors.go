package schemas

import "errors"

// Sentinel errors of the decoders. Callers test them with errors.Is.
var (
	// ErrMalformed marks input that is not a valid envelope, delivery or event.
	ErrMalformed = errors.New("malformed")
	// ErrVersion marks a schema version this package does not speak.
	ErrVersion = errors.New("unsupported schema version")
	// ErrTooLarge marks input over the size limit.
	ErrTooLarge = errors.New("too large")
	// ErrSignature marks a missing or invalid signature.
	ErrSignature = errors.New("bad signature")
)
