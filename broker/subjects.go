package broker

import (
	"fmt"
	"strings"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// DefaultPrefix is the subject prefix when none is configured.
const DefaultPrefix = "tg"

// Stream names (before the configured stream prefix).
const (
	StreamSubmit  = "SUBMIT"
	StreamDeliver = "DELIVER"
	StreamLedger  = "LEDGER"
	StreamAlerts  = "ALERTS"
	// StreamDeadLetter keeps what could not be delivered (alerts no sink
	// took after every retry), for operators to list.
	StreamDeadLetter = "DEADLETTER"
	// StreamTimers holds the server-side schedules of hop deadlines and run
	// wall clocks, and the messages they fire.
	StreamTimers = "TIMERS"
	// BucketRate is the KV bucket of per-agent rate-limit token buckets.
	BucketRate = "tollgate_rate"
	// BucketQuota is the KV bucket of spend quotas (enforcer/quota).
	BucketQuota = "tollgate_quota"
	// BucketQuotaHolds holds one key per open hop and quota it reserved in,
	// so that reserving and settling are idempotent per hop.
	BucketQuotaHolds = "tollgate_quota_holds"
	// BucketBreakers holds each target's circuit-breaker state.
	BucketBreakers = "tollgate_breakers"
	// BucketSpend holds the fleet's recent spend per agent and per team,
	// for the spend-spike alerts.
	BucketSpend = "tollgate_spend"
	// QuotaHoldsMaxAge is how long a hold is kept: a hop open longer than
	// this settles nothing.
	QuotaHoldsMaxAge = 7 * 24 * time.Hour
)

// TimerRunKey is the timer key of a run's wall clock (hop ids never start
// with an underscore).
const TimerRunKey = "_run"

// EnforcerConsumer is the durable consumer of SUBMIT that enforcers share.
const EnforcerConsumer = "enforcer"

// ProjectorConsumer is the durable consumer of LEDGER that feeds
// ClickHouse; operators may read the ledger but never touch it.
const ProjectorConsumer = "projector"

// TimersConsumer is the durable consumer of TIMERS shared by the enforcers
// whose SUBMIT consumer is named enforcer (EnforcerConsumer by default):
// it hands them fired deadlines and wall clocks.
func TimersConsumer(enforcer string) string { return enforcer + "_timers" }

// Subjects builds every subject, stream and consumer name Tollgate uses.
// Nothing else in Tollgate concatenates subjects. The zero value is not
// usable; create one with NewSubjects.
type Subjects struct {
	prefix       string
	streamPrefix string
}

// NewSubjects returns the names for a subject prefix (default "tg") and a
// stream-name prefix (default none), so that several gateways can share one
// NATS account.
func NewSubjects(prefix, streamPrefix string) (Subjects, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for _, tok := range strings.Split(prefix, ".") {
		if !validToken(tok) {
			return Subjects{}, fmt.Errorf("subject prefix %q: token %q is not a plain subject token", prefix, tok)
		}
	}
	if streamPrefix != "" && !validName(streamPrefix) {
		return Subjects{}, fmt.Errorf("stream prefix %q must be letters, digits, '_' or '-'", streamPrefix)
	}
	return Subjects{prefix: prefix, streamPrefix: streamPrefix}, nil
}

// DefaultSubjects returns the names for the default prefix.
func DefaultSubjects() Subjects { return Subjects{prefix: DefaultPrefix} }

// Prefix returns the subject prefix.
func (s Subjects) Prefix() string { return s.prefix }

// Stream returns the full name of one of the Stream* streams.
func (s Subjects) Stream(name string) string { return s.streamPrefix + name }

// Submit is where caller publishes the submissions of a run.
func (s Subjects) Submit(caller, run string) string {
	return s.prefix + ".submit." + caller + "." + run
}

// SubmitFor is the wildcard of every submission by caller.
func (s Subjects) SubmitFor(caller string) string { return s.prefix + ".submit." + caller + ".>" }

// SubmitAll is the wildcard of every submission.
func (s Subjects) SubmitAll() string { return s.prefix + ".submit.>" }

// ParseSubmit splits a submit subject into its caller and run tokens. When
// the subject is not a valid submit subject, ok is false and caller is
// still set if the caller token can be read, so that the sender can be
// told.
func (s Subjects) ParseSubmit(subject string) (caller, run string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix+".submit.")
	if !found {
		return "", "", false
	}
	caller, run, found = strings.Cut(rest, ".")
	if !schemas.ValidPrincipalID(caller) {
		return "", "", false
	}
	if !found || run == "" || strings.Contains(run, ".") {
		return caller, "", false
	}
	return caller, run, true
}

// Deliver is the subject of one delivery: kind for hop, to agent. Each is
// written once (expected last subject sequence 0), which is what makes a
// forward after a crash idempotent.
func (s Subjects) Deliver(agent, hop string, kind schemas.DeliveryKind) string {
	return s.prefix + ".deliver." + agent + "." + hop + "." + string(kind)
}

// DeliverHop is the wildcard of every delivery to agent for one hop.
func (s Subjects) DeliverHop(agent, hop string) string {
	return s.prefix + ".deliver." + agent + "." + hop + ".*"
}

// DeliverFor is the wildcard of every delivery to agent.
func (s Subjects) DeliverFor(agent string) string { return s.prefix + ".deliver." + agent + ".>" }

// DeliverAll is the wildcard of every delivery.
func (s Subjects) DeliverAll() string { return s.prefix + ".deliver.>" }

// ParseDeliver splits a delivery subject into agent, hop and kind.
func (s Subjects) ParseDeliver(subject string) (agent, hop string, kind schemas.DeliveryKind, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix+".deliver.")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], schemas.DeliveryKind(parts[2]), true
}

// Ledger is the subject of a run's ledger.
func (s Subjects) Ledger(run string) string { return s.prefix + ".ledger." + run }

// LedgerAll is the wildcard of every run's ledger.
func (s Subjects) LedgerAll() string { return s.prefix + ".ledger.*" }

// LedgerRun returns the run of a ledger subject.
func (s Subjects) LedgerRun(subject string) (string, bool) {
	run, found := strings.CutPrefix(subject, s.prefix+".ledger.")
	if !found || run == "" || strings.Contains(run, ".") {
		return "", false
	}
	return run, true
}

// Alert is the subject alerts of a run are published on.
func (s Subjects) Alert(run string) string { return s.prefix + ".alert." + run }

// AlertApproval is the subject of the alert asking approvers to approve
// or reject a held hop.
func (s Subjects) AlertApproval(run, hop string) string {
	return s.prefix + ".alert." + run + ".approval." + hop
}

// AlertFleet is the subject of an alert about the fleet rather than one
// run: kind (circuit, spend_spike) and key (a target, an agent or a team).
// Run ids are one token, so tg.alert.fleet.<kind>.<key> is never a run's
// alert subject.
func (s Subjects) AlertFleet(kind, key string) string {
	return s.prefix + ".alert.fleet." + kind + "." + key
}

// AlertAll is the wildcard of every alert.
func (s Subjects) AlertAll() string { return s.prefix + ".alert.>" }

// TimerSchedule is where the schedule of a timer (a hop's deadline, or
// TimerRunKey for the run's wall clock) is kept until it fires.
func (s Subjects) TimerSchedule(run, key string) string {
	return s.prefix + ".timer.sched." + run + "." + key
}

// ParseTimerSchedule returns the run of a run's wall-clock schedule
// subject (TimerSchedule(run, TimerRunKey)).
func (s Subjects) ParseTimerSchedule(subject string) (run string, ok bool) {
	rest, ok := strings.CutPrefix(subject, s.prefix+".timer.sched.")
	if !ok {
		return "", false
	}
	run, ok = strings.CutSuffix(rest, "."+TimerRunKey)
	return run, ok && run != "" && !strings.Contains(run, ".")
}

// TimerFire is where a timer fires.
func (s Subjects) TimerFire(run, key string) string {
	return s.prefix + ".timer.fire." + run + "." + key
}

// TimerFireAll is the wildcard of every fired timer.
func (s Subjects) TimerFireAll() string { return s.prefix + ".timer.fire.>" }

// TimerAll is the wildcard of every timer subject.
func (s Subjects) TimerAll() string { return s.prefix + ".timer.>" }

// ParseTimerFire splits a fired timer's subject into run and key.
func (s Subjects) ParseTimerFire(subject string) (run, key string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix+".timer.fire.")
	if !found {
		return "", "", false
	}
	run, key, found = strings.Cut(rest, ".")
	if !found || run == "" || key == "" || strings.Contains(key, ".") {
		return "", "", false
	}
	return run, key, true
}

// Bucket returns the full name of a KV bucket.
func (s Subjects) Bucket(name string) string { return s.streamPrefix + name }

// CtlHalt is the operator subject that halts a run.
func (s Subjects) CtlHalt(run string) string { return s.prefix + ".ctl.halt." + run }

// CtlApprove is the operator subject that approves or rejects a hop of a
// run held for approval.
func (s Subjects) CtlApprove(run string) string { return s.prefix + ".ctl.approve." + run }

// ParseCtlApprove returns the run of an approval subject.
func (s Subjects) ParseCtlApprove(subject string) (string, bool) {
	run, found := strings.CutPrefix(subject, s.prefix+".ctl.approve.")
	return run, found && schemas.ValidID(run)
}

// DeadLetterAlerts is where the alerts a sink refused after every retry
// go.
func (s Subjects) DeadLetterAlerts(sink string) string {
	return s.prefix + ".deadletter.alerts." + sink
}

// DeadLetterAll matches every dead letter.
func (s Subjects) DeadLetterAll() string { return s.prefix + ".deadletter.>" }

// CtlReload is where operators ask the gateways to reload their config.
func (s Subjects) CtlReload() string { return s.prefix + ".ctl.reload" }

// CtlQuota is where operators ask for the state of the spend quotas.
func (s Subjects) CtlQuota() string { return s.prefix + ".ctl.quota" }

// CtlAll is the wildcard of every operator control subject.
func (s Subjects) CtlAll() string { return s.prefix + ".ctl.>" }

// ParseCtlHalt returns the run of a halt subject.
func (s Subjects) ParseCtlHalt(subject string) (string, bool) {
	run, found := strings.CutPrefix(subject, s.prefix+".ctl.halt.")
	if !found || run == "" || strings.Contains(run, ".") {
		return "", false
	}
	return run, true
}

// Query is where an identity asks the gateway about a hop it holds (for
// one, whether a task delivered to it again is answered already).
func (s Subjects) Query(caller, run, hop string) string {
	return s.prefix + ".query." + caller + "." + run + "." + hop
}

// QueryFor is the wildcard of every query by caller.
func (s Subjects) QueryFor(caller string) string { return s.prefix + ".query." + caller + ".>" }

// QueryAll is the wildcard of every query.
func (s Subjects) QueryAll() string { return s.prefix + ".query.*.*.*" }

// ParseQuery splits a query subject into caller, run and hop.
func (s Subjects) ParseQuery(subject string) (caller, run, hop string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix+".query.")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || !schemas.ValidPrincipalID(parts[0]) || !schemas.ValidID(parts[1]) || !schemas.ValidID(parts[2]) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// AgentConsumer is the durable DELIVER consumer of an agent or user.
func AgentConsumer(id string) string { return "agent_" + id }

// InboxPrefix is the only inbox prefix an identity may subscribe under.
func InboxPrefix(id string) string { return "_INBOX_" + id }

// JetStream API subjects an identity's permissions refer to.

func jsAck(stream, consumer string) string { return "$JS.ACK." + stream + "." + consumer + ".>" }

// jsAckDomain is the acknowledgement subject in its newer form, with the
// domain and account hash tokens ahead of the stream.
func jsAckDomain(stream, consumer string) string {
	return "$JS.ACK.*.*." + stream + "." + consumer + ".>"
}

func validToken(tok string) bool {
	return tok != "" && !strings.ContainsAny(tok, ".*> \t\r\n")
}

func validName(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
