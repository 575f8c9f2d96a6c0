//go:build unix

package models

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStreamChunk measures what scanning a stream adds per chunk: a
// benign completion streamed in 4-byte chunks (an upstream's usual token
// size) through the guard with the real engine, against the same chunks
// passed through unguarded. The difference of the two ns/op is the added
// latency per chunk. On a shared machine ns/op (wall clock) mostly
// measures the other processes: cpu-ns/chunk is the process's CPU time
// (user and system) per chunk, which they do not inflate.
func BenchmarkStreamChunk(b *testing.B) {
	text := strings.Repeat(benign, 20)
	chunks := make([][]byte, 0, len(text)/4+1)
	for _, p := range pieces(text, 4) {
		chunks = append(chunks, textChunk(0, p))
	}
	for _, bc := range []struct {
		name string
		hold int
	}{{"unguarded", -1}, {"hold=64", 64}, {"hold=128", 128}, {"hold=512", 512}} {
		b.Run(bc.name, func(b *testing.B) {
			scan := engineScan(b)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			var scans int
			for i := 0; i < b.N; {
				var st streamer = &recorder{}
				var g *guardedStreamer
				if bc.hold > 0 {
					g = newGuardedStreamer(st, scan, bc.hold)
					st = g
				}
				for _, c := range chunks {
					if i == b.N {
						break
					}
					if err := st.chunk(c); err != nil {
						b.Fatal(err)
					}
					i++
				}
				if g != nil {
					scans += g.stats.Scans
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/chunk")
			b.ReportMetric(float64(scans)/float64(b.N), "scans/chunk")
		})
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
