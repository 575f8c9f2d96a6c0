package gateway

import (
	"os"
	"runtime/debug"

	"github.com/tollgate/tollgate/enforcer"
)

// MemoryOverhead is what serve's default soft memory limit allows beyond
// the run cache (enforcer.run_cache_bytes): the embedded NATS server's
// buffers and indexes, the policies, the guardrails, the connections, and
// the room the collector needs. The Go runtime collects harder near the
// limit instead of letting the heap grow to twice what is live
// (docs/benchmarks.md, Memory).
const MemoryOverhead = 384 << 20

// MemoryLimitBytes is the soft memory limit serve sets: memory_limit when
// configured (-1: none), else the run cache's bytes plus MemoryOverhead
// (512 MiB with the default 128 MiB cache).
func (c EnforcerConfig) MemoryLimitBytes() int64 {
	if c.MemoryLimit != 0 {
		return c.MemoryLimit
	}
	cache := int64(c.RunCacheBytes)
	if cache <= 0 {
		cache = enforcer.DefaultRunCacheBytes
	}
	return cache + MemoryOverhead
}

// SetMemoryLimit sets the process's soft memory limit to limit, unless
// GOMEMLIMIT is set in the environment (which the runtime has applied
// already) or limit is not positive. It is for the process that runs the
// gateway (serve); the limit is the whole process's.
func SetMemoryLimit(limit int64) {
	if os.Getenv("GOMEMLIMIT") != "" || limit <= 0 {
		return
	}
	debug.SetMemoryLimit(limit)
}
