package gateway

import (
	"os"
	"runtime/debug"
)

// DefaultMemoryLimit is serve's soft memory limit when the config sets
// none (enforcer.memory_limit): the Go runtime collects harder near it
// instead of letting the heap grow to twice what is live
// (docs/benchmarks.md, Memory).
const DefaultMemoryLimit = 1 << 30

// SetMemoryLimit sets the process's soft memory limit to limit (0:
// DefaultMemoryLimit), unless GOMEMLIMIT is set in the environment (which
// the runtime has applied already) or limit is negative. It is for the
// process that runs the gateway (serve); the limit is the whole process's.
func SetMemoryLimit(limit int64) {
	if os.Getenv("GOMEMLIMIT") != "" || limit < 0 {
		return
	}
	if limit == 0 {
		limit = DefaultMemoryLimit
	}
	debug.SetMemoryLimit(limit)
}
