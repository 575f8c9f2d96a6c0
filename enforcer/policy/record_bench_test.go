package policy

import "testing"

// BenchmarkRecordOf builds the context record of a decision whose
// policies read two attributes (the common case), and of one that reads
// the whole context. quota_used is built only when read, so the first
// costs the same with or without it (docs/benchmarks.md).
func BenchmarkRecordOf(b *testing.B) {
	c := Context{RunID: "r", Workflow: "w", Depth: 3, Ancestry: []string{"tomas", "orchestrator", "research"}, OnBehalfOf: "tomas",
		HopsSoFar: 9, TokensSoFar: 1200, CostSoFar: 0.25, EdgeCalls: 1, QuotaUsed: func() int64 { return 42 }}
	two := contextAttr("depth") | contextAttr("tainted")
	b.Run("reads=2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.recordOf(two)
		}
	})
	b.Run("reads=all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.recordOf(wholeContext)
		}
	})
}
