package security_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// replyTarget is a subject an attacker names as the reply subject of its
// own submissions, pulls and acks, hoping the gateway's account answers
// there with its rights.
type replyTarget struct {
	name    string
	subject func(v *victims) string
	// check is the target's own safe outcome, beyond the checks every
	// target gets; nil when those say it all.
	check func(t *testing.T, g *gw, v *victims)
	// reserved marks reply subjects the server refuses outright
	// (acknowledgement and service-response subjects).
	reserved bool
}

// replyTargets are every subject issue 9 names, and a few more.
func replyTargets(s broker.Subjects) []replyTarget {
	jsAPI := func(rest string) func(*victims) string {
		return func(*victims) string { return "$JS.API." + rest }
	}
	rate := "KV_" + broker.BucketRate
	return []replyTarget{
		{name: "StreamDeleteLedger", subject: jsAPI("STREAM.DELETE.LEDGER")},
		{name: "StreamPurgeLedger", subject: jsAPI("STREAM.PURGE.LEDGER")},
		{name: "StreamUpdateLedger", subject: jsAPI("STREAM.UPDATE.LEDGER")},
		{name: "StreamMsgDeleteLedger", subject: jsAPI("STREAM.MSG.DELETE.LEDGER")},
		{name: "StreamPurgeDeliver", subject: jsAPI("STREAM.PURGE.DELIVER")},
		{name: "StreamPurgeSubmit", subject: jsAPI("STREAM.PURGE.SUBMIT")},
		{name: "ConsumerDeleteEnforcer", subject: jsAPI("CONSUMER.DELETE.SUBMIT." + broker.EnforcerConsumer)},
		{name: "ConsumerDeleteOtherAgent", subject: jsAPI("CONSUMER.DELETE.DELIVER." + broker.AgentConsumer("writer"))},
		{name: "StreamDeleteRateBucket", subject: jsAPI("STREAM.DELETE." + rate)},
		{name: "StreamPurgeRateBucket", subject: jsAPI("STREAM.PURGE." + rate)},
		{name: "RateBucketKey", subject: func(*victims) string { return "$KV." + broker.BucketRate + ".rejected.mallory" },
			check: func(t *testing.T, g *gw, v *victims) {
				if g.admin == nil {
					return
				}
				if m := g.lastOn(t, "KV_"+broker.BucketRate, "$KV."+broker.BucketRate+".rejected.mallory"); m != nil {
					var b struct {
						Tokens *float64 `json:"t"`
					}
					if json.Unmarshal(m.Data, &b) != nil || b.Tokens == nil {
						t.Fatalf("mallory's rejection bucket holds %q, not a bucket the gateway wrote", m.Data)
					}
				}
			}},
		{name: "LedgerOfOpenRun", subject: func(v *victims) string { return s.Ledger(v.open.ID) }},
		{name: "LedgerOfCompletedRun", subject: func(v *victims) string { return s.Ledger(v.done) }},
		{name: "LedgerOfNewRun", subject: func(v *victims) string { return s.Ledger(v.future) }},
		{name: "DeliveryReplyPrewrite", subject: func(v *victims) string { return s.Deliver("tomas", v.futureHop, schemas.DeliverReply) },
			check: func(t *testing.T, g *gw, v *victims) {
				if g.admin != nil && g.lastOn(t, broker.StreamDeliver, s.Deliver("tomas", v.futureHop, schemas.DeliverReply)) != nil {
					t.Fatal("the reply delivery of tomas's future run was pre-written")
				}
			}},
		{name: "DeliveryCancelPrewrite", subject: func(v *victims) string {
			return s.Deliver("orchestrator", v.open.RootHop, schemas.DeliverCancel)
		}, check: func(t *testing.T, g *gw, v *victims) {
			if g.admin != nil && g.lastOn(t, broker.StreamDeliver, s.Deliver("orchestrator", v.open.RootHop, schemas.DeliverCancel)) != nil {
				t.Fatal("a cancel of the open run's hop was written")
			}
		}},
		{name: "AlertPrewrite", subject: func(v *victims) string { return s.Alert(v.alertRun.ID) },
			check: func(t *testing.T, g *gw, v *victims) {
				if g.admin != nil && g.lastOn(t, broker.StreamAlerts, s.Alert(v.alertRun.ID)) != nil {
					t.Fatal("an alert was written for a run nobody halted")
				}
			}},
		{name: "SubmitAsOtherIdentity", subject: func(v *victims) string { return s.Submit("tomas", v.open.ID) }},
		{name: "TimerSchedule", subject: func(v *victims) string { return s.TimerSchedule(v.open.ID, broker.TimerRunKey) },
			check: func(t *testing.T, g *gw, v *victims) {
				if g.admin == nil {
					return
				}
				if m := g.lastOn(t, broker.StreamTimers, s.TimerSchedule(v.open.ID, broker.TimerRunKey)); m != nil && len(m.Data) != 0 {
					t.Fatalf("the open run's timer schedule was replaced with %q", m.Data)
				}
			}},
		{name: "TimerFire", subject: func(v *victims) string { return s.TimerFire(v.open.ID, broker.TimerRunKey) }},
		{name: "OperatorHalt", subject: func(v *victims) string { return s.CtlHalt(v.open.ID) }},
		{name: "OtherAgentsAck", subject: func(*victims) string {
			return fmt.Sprintf("$JS.ACK.%s.%s.1.1.1.%d.0", broker.StreamDeliver, broker.AgentConsumer("writer"), time.Now().UnixNano())
		}, reserved: true},
		{name: "ServiceResponseSubject", subject: func(*victims) string { return "_R_.x1y2z3.abcdef" }, reserved: true},
		{name: "OtherAgentsPull", subject: func(*victims) string {
			return s.JSAPIPrefix() + ".CONSUMER.MSG.NEXT.DELIVER." + broker.AgentConsumer("writer")
		}},
		{name: "PrefixedStreamDeleteLedger", subject: func(*victims) string { return s.JSAPIPrefix() + ".STREAM.DELETE.LEDGER" }},
	}
}

// TestReplySubjectAbuse: an agent names, as the reply subject of its own
// submission, of pulls from its own consumer and of the ack of its own
// delivery, every subject of the gateway's account it should never reach.
// Each must come back into its own account and go nowhere: the streams,
// consumers and bucket are intact, no victim run moved, nothing was
// written where it aimed, and a legitimate run still gets through.
func TestReplySubjectAbuse(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		v := g.victims(t)
		mallory := g.attacker(t, "mallory")
		for _, tc := range replyTargets(g.subj) {
			t.Run(tc.name, func(t *testing.T) {
				target := tc.subject(v)
				before, heads, delivered := g.ops.snapshot(t), v.heads(t), g.deliverMsgs(t)
				run := schemas.NewID()

				// Pulls from its own consumer, the messages aimed at target:
				// one that takes the denial waiting there, one that waits.
				mallory.submit(t, run, []byte(`{"attack":"`+tc.name+`-pull"}`), nil)
				mallory.waitPending(t)
				mallory.raw(t, mallory.nextSubject(), target, []byte(`{"batch":1,"no_wait":true}`), nil)
				mallory.raw(t, mallory.nextSubject(), target, []byte(`{"batch":1,"expires":300000000}`), nil)
				mallory.waitNoPull(t)
				// Its own submission, the acknowledgement aimed at target.
				mallory.raw(t, g.subj.Submit("mallory", run), target, []byte(`{"attack":"`+tc.name+`"}`), nil)
				// The ack of a delivery of its own, the ack's answer aimed
				// at target.
				seq := mallory.submit(t, run, []byte(`{"attack":"`+tc.name+`-ack"}`), nil)
				_, m := mallory.await(t, 20*time.Second, "the denial to ack", func(d *schemas.Delivery) bool {
					return d.Denial != nil && d.Denial.SubmitSeq == seq
				})
				mallory.raw(t, m.Reply(), target, []byte("+ACK"), nil)
				if tc.reserved {
					// The server refuses the reserved reply subject outright.
					mallory.wantViolation(t, "Reply of \""+target)
				}
				mallory.barrier(t, run)

				own := g.ops.onlyOwnRejections(t, before, "mallory")
				want := 4 // pull, reply-aimed, ack and barrier submissions
				if tc.reserved {
					want = 3 // the reply-aimed one never got in
				}
				if len(own) != want {
					t.Errorf("mallory's submissions left %d rejection entries, want %d", len(own), want)
				}
				v.unchanged(t, heads)
				g.streamsIntact(t)
				if n := g.deliverMsgs(t); n < delivered {
					t.Fatalf("DELIVER lost messages: %d before, %d after", delivered, n)
				}
				if tc.check != nil {
					tc.check(t, g, v)
				}
				g.cast.legit(t)
			})
		}
		t.Run("VictimsStillServed", v.stillServed)
	})
}
