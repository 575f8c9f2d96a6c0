package policy

import "errors"

// Sentinel errors of reading and compiling policies. Callers test them
// with errors.Is; Compile and ReadFiles join one error per problem, each
// wrapping one of these with the file, line and policy concerned.
var (
	// ErrNoMatch means a policy path or glob matches no file.
	ErrNoMatch = errors.New("matches no file")
	// ErrDuplicateID means two policies have the same id.
	ErrDuplicateID = errors.New("is also used")
	// ErrSchema means a policy does not match Tollgate's Cedar schema.
	ErrSchema = errors.New("does not match the schema")
)
