package broker

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Runs are partitioned across enforcer instances by their run token. The
// SUBMIT stream maps every tg.submit.<caller>.<run> it stores to
// tg.part.<p>.<caller>.<run> with the server's own subject mapping
// function {{partition(n,2)}} (a stream subject transform, in the gateway
// account, so it applies to the submissions every identity account
// imports into it); the enforcer sets its timers' fire subjects to the same
// partition, computed by Partition. Each partition has one durable
// consumer of SUBMIT and one of TIMERS, both with a pinned-client priority
// group: the server hands a partition to one instance at a time and moves
// it to another when the pinned one stops pulling (PinnedTTL). The part
// token is outside every identity's import, so no agent can publish into a
// partition directly.

// MaxPartitions bounds the partition count.
const MaxPartitions = 1024

// PartitionGroup is the priority group every partition consumer has.
const PartitionGroup = "owner"

// Partition returns the partition of run among n, the same the server's
// {{partition(n,…)}} mapping function computes: FNV-1a (32 bit) of the
// token, modulo n.
func Partition(run string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(run))
	return int(h.Sum32() % uint32(n))
}

// PartitionConsumer is the name of the durable consumer of partition p,
// named after the enforcer's base consumer name (EnforcerConsumer or
// TimersConsumer of it).
func PartitionConsumer(base string, p int) string { return base + "_p" + strconv.Itoa(p) }

// SubmitTransform is the SUBMIT stream's subject transform for n
// partitions.
func (s Subjects) SubmitTransform(n int) *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      s.prefix + ".submit.*.*",
		Destination: fmt.Sprintf("%s.part.{{partition(%d,2)}}.{{wildcard(1)}}.{{wildcard(2)}}", s.prefix, n),
	}
}

// SubmitUnmapped is the wildcard of the submissions a partitioned SUBMIT
// does not map: those with more tokens than a submit subject has, which
// belong to no run. (A consumer filtering tg.submit.> would, as of
// nats-server 2.15, keep the work queue from removing mapped submissions
// once acked.)
func (s Subjects) SubmitUnmapped() string { return s.prefix + ".submit.*.*.>" }

// Partitioned is the subject a submission of caller for run is stored
// under in partition p.
func (s Subjects) Partitioned(p int, caller, run string) string {
	return s.prefix + ".part." + strconv.Itoa(p) + "." + caller + "." + run
}

// SubmitPartition is the wildcard of partition p's submissions.
func (s Subjects) SubmitPartition(p int) string {
	return s.prefix + ".part." + strconv.Itoa(p) + ".>"
}

// ParsePartitioned splits a partitioned submission subject into its
// partition, caller and run tokens. ok is false when it is not one.
func (s Subjects) ParsePartitioned(subject string) (p int, caller, run string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix+".part.")
	if !found {
		return 0, "", "", false
	}
	part, rest, found := strings.Cut(rest, ".")
	if !found {
		return 0, "", "", false
	}
	p, err := strconv.Atoi(part)
	if err != nil || p < 0 {
		return 0, "", "", false
	}
	caller, run, ok = s.ParseSubmit(s.prefix + ".submit." + rest)
	return p, caller, run, ok
}

// TimerFireIn is where a run's timer fires when runs are partitioned: in
// the run's partition p.
func (s Subjects) TimerFireIn(p int, run, key string) string {
	return s.prefix + ".timer.part." + strconv.Itoa(p) + "." + run + "." + key
}

// TimerFirePartition is the wildcard of partition p's fired timers.
func (s Subjects) TimerFirePartition(p int) string {
	return s.prefix + ".timer.part." + strconv.Itoa(p) + ".>"
}

// ParseTimerFireIn splits a partitioned fired timer's subject into run and
// key.
func (s Subjects) ParseTimerFireIn(subject string) (run, key string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix+".timer.part.")
	if !found {
		return "", "", false
	}
	part, rest, found := strings.Cut(rest, ".")
	if _, err := strconv.Atoi(part); !found || err != nil {
		return "", "", false
	}
	return s.ParseTimerFire(s.prefix + ".timer.fire." + rest)
}
