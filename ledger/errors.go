package ledger

import "errors"

var (
	// ErrConflict means another writer appended to the run since the head
	// the caller built on. Reload the run and decide again.
	ErrConflict = errors.New("ledger: run changed since it was read")
	// ErrNoRun means the run has no events.
	ErrNoRun = errors.New("ledger: no such run")
	// ErrTampered means Verify found a broken link; it is wrapped by a
	// *VerifyError that names the event.
	ErrTampered = errors.New("ledger: chain is broken")
)
