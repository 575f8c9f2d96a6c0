package gateway_test

import (
	"testing"

	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestMemoryLimitFollowsTheCache: without memory_limit, serve's soft limit
// is the run cache plus a fixed overhead, so a larger cache raises it; a
// configured limit wins, and -1 means none.
func TestMemoryLimitFollowsTheCache(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cache, limit int64
		want         int64
	}{
		{"defaults", 0, 0, 128<<20 + gateway.MemoryOverhead},
		{"a 1 GiB cache", 1 << 30, 0, 1<<30 + gateway.MemoryOverhead},
		{"configured", 1 << 30, 700 << 20, 700 << 20},
		{"none", 0, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gateway.EnforcerConfig{RunCacheBytes: int(tc.cache), MemoryLimit: tc.limit}
			if got := c.MemoryLimitBytes(); got != tc.want {
				t.Fatalf("limit %d, want %d", got, tc.want)
			}
		})
	}
}
