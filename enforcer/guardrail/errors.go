package guardrail

import "errors"

// Errors. A finding is never an error: it is part of a Result. These are
// for configuration problems and for the external checker's failures.
var (
	// ErrConfig: the configuration is invalid. New and Config.Validate
	// wrap it with every problem found.
	ErrConfig = errors.New("guardrail: invalid configuration")
	// ErrRules: a shipped rule pack does not compile. It is a bug in this
	// package, reported by New.
	ErrRules = errors.New("guardrail: rule packs do not compile")

	// ErrCheckerTimeout: the external checker did not answer in time.
	ErrCheckerTimeout = errors.New("guardrail: external checker timed out")
	// ErrCheckerBusy: every slot of the checker's concurrency cap stayed
	// taken until the deadline.
	ErrCheckerBusy = errors.New("guardrail: external checker busy")
	// ErrCheckerStatus: the checker answered with an HTTP status other
	// than 200.
	ErrCheckerStatus = errors.New("guardrail: external checker answered with an error status")
	// ErrCheckerAnswer: the checker's answer is not a valid verdict.
	ErrCheckerAnswer = errors.New("guardrail: external checker answer is malformed")
	// ErrCheckerUnreachable: the request to the checker failed in
	// transport (connection refused, reset, DNS).
	ErrCheckerUnreachable = errors.New("guardrail: external checker unreachable")
)
