package operator

import "errors"

// Sentinel errors. Callers test them with errors.Is; the errors returned
// wrap them with the run and the gateway's reason.
var (
	// ErrRefused is returned when the gateway refused a command; the error
	// says why.
	ErrRefused = errors.New("operator: command refused")
	// ErrNoAnswer is returned when no gateway answered a command in time
	// (none runs, or the key may not publish control commands).
	ErrNoAnswer = errors.New("no answer from a gateway")
)
