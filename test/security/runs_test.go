package security_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// TestForeignRunAppends: a reply, a cancel, an invoke or garbage naming a
// run in which the sender holds no open hop (open, completed, or one it
// once was a member of) never reaches that run's ledger: its event count
// and head stay, it verifies, and the denial is recorded in an entry of
// its own, from the sender, delivered back to the sender.
func TestForeignRunAppends(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		open := g.cast.open(t)
		done := g.cast.legit(t)
		// A run mallory was a member of, completed since.
		former := mallory.delegatedTo(t)
		former.finish(t, nil)

		type victim struct{ name, run, rootHop string }
		victims := []victim{
			{"OpenRun", open.ID, open.RootHop},
			{"CompletedRun", done, schemas.DeriveHopID(schemas.RunScope(done), "")},
			{"FormerMembersRun", former.Run, former.Hop},
		}
		kinds := []struct {
			name   string
			body   func(t *testing.T, v victim) []byte
			reason schemas.Reason
		}{
			{"Reply", func(t *testing.T, v victim) []byte {
				env := mallory.envelope(schemas.KindReply)
				env.HopID, env.RunID, env.To = v.rootHop, v.run, "tomas"
				env.Result = &schemas.Result{Status: schemas.StateCompleted, Output: []byte(`{"kind":"message"}`)}
				return mallory.sign(t, env)
			}, ""},
			{"Cancel", func(t *testing.T, v victim) []byte {
				env := mallory.envelope(schemas.KindCancel)
				env.HopID, env.RunID, env.To = v.rootHop, v.run, "orchestrator"
				return mallory.sign(t, env)
			}, schemas.ReasonHop},
			{"Invoke", func(t *testing.T, v victim) []byte {
				env := mallory.envelope(schemas.KindInvoke)
				env.RunID, env.ParentHopID, env.To, env.Message = v.run, v.rootHop, "research", message("x")
				env.HopID = env.DerivedHopID()
				return mallory.sign(t, env)
			}, ""},
			{"RootInvokeOnExistingRun", func(t *testing.T, v victim) []byte {
				env := mallory.envelope(schemas.KindInvoke)
				env.RunID, env.To, env.Message, env.HopKey = v.run, "research", message("x"), "1"
				env.HopID = env.DerivedHopID()
				return mallory.sign(t, env)
			}, schemas.ReasonRun},
			{"Garbage", func(t *testing.T, v victim) []byte { return []byte("not json at all") }, schemas.ReasonMalformed},
			{"LargeDeniedBody", func(t *testing.T, v victim) []byte {
				env := mallory.envelope(schemas.KindReply)
				env.HopID, env.RunID, env.To = v.rootHop, v.run, "tomas"
				env.Result = &schemas.Result{Status: schemas.StateFailed, Error: strings.Repeat("A", 64<<10)}
				return mallory.sign(t, env)
			}, ""},
		}
		for _, v := range victims {
			for _, k := range kinds {
				t.Run(v.name+"/"+k.name, func(t *testing.T) {
					before := g.ops.snapshot(t)
					events := g.ops.verified(t, v.run)
					body := k.body(t, v)
					seq := mallory.submit(t, v.run, body, nil)
					d := mallory.denial(t, seq)
					if k.reason != "" && d.Denial.Reason != k.reason {
						t.Errorf("denied as %s (%s), want %s", d.Denial.Reason, d.Denial.Message, k.reason)
					}
					own := g.ops.onlyOwnRejections(t, before, "mallory")
					if len(own) != 1 {
						t.Fatalf("%d rejection entries, want 1", len(own))
					}
					after := g.ops.verified(t, v.run)
					if len(after) != len(events) || after[len(after)-1].Event.Hash != events[len(events)-1].Event.Hash {
						t.Fatalf("run %s moved: %d events, had %d", v.run, len(after), len(events))
					}
					rec := g.ops.read(t, own[0])[0]
					dec := decisionOf(t, rec)
					if dec.SubmitSeq != seq || dec.Size != len(body) || dec.Digest != schemas.Digest(body) {
						t.Errorf("rejection entry: seq %d size %d digest %s", dec.SubmitSeq, dec.Size, dec.Digest)
					}
					if len(body) > 4096 {
						// Recorded by digest, size and a 1 KiB excerpt.
						if dec.Envelope != nil || len(dec.Raw) != 1024 || !bytes.HasPrefix(body, dec.Raw) {
							t.Errorf("a %d-byte denied body is recorded with %d bytes of envelope and %d raw", len(body), len(dec.Envelope), len(dec.Raw))
						}
						if len(rec.Raw) > 4096 {
							t.Errorf("the rejection entry is %d bytes", len(rec.Raw))
						}
					}
				})
			}
		}
		t.Run("LegitimateRunAfter", func(t *testing.T) {
			open.release()
			if err := <-open.done; err != nil {
				t.Fatal(err)
			}
			g.ops.verified(t, open.ID)
			g.cast.legit(t)
		})
	})
}

// TestRunLaundering: an agent may start a run only where a policy permits
// start_run; a run started from inside a task must name a hop the agent
// holds open, and then continues that run's principal, depth, ancestry
// and limits.
func TestRunLaundering(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		spawner := g.attacker(t, "spawner") // policy lets it start runs
		open := g.cast.open(t)

		rootInvoke := func(a *attacker, spawn *schemas.SpawnRef) (string, []byte) {
			env := a.envelope(schemas.KindInvoke)
			env.RunID, env.To, env.Message, env.SpawnedFrom = schemas.NewID(), "research", message("fresh run"), spawn
			env.HopID = env.DerivedHopID()
			return env.RunID, a.sign(t, env)
		}
		noAllowedHop := func(t *testing.T, run string) {
			t.Helper()
			if n := countEvents(g.ops.read(t, run), schemas.EventHopAllowed); n != 0 {
				t.Fatalf("run %s has %d allowed hops", run, n)
			}
		}

		t.Run("RootRunWithoutStartRunPermit", func(t *testing.T) {
			run, body := rootInvoke(mallory, nil)
			d := mallory.wantDenied(t, run, body, nil, schemas.ReasonPolicy, "start_run")
			if d.Context.Depth != 0 {
				t.Errorf("depth %d", d.Context.Depth)
			}
			noAllowedHop(t, run)
			g.cast.legit(t)
		})
		t.Run("SpawnFromSomeoneElsesHop", func(t *testing.T) {
			// The open run's root hop was delivered to the orchestrator.
			for _, a := range []*attacker{mallory, spawner} {
				run, body := rootInvoke(a, &schemas.SpawnRef{RunID: open.ID, HopID: open.RootHop})
				a.wantDenied(t, run, body, nil, schemas.ReasonParent, `delivered to "orchestrator"`)
				noAllowedHop(t, run)
			}
			g.cast.legit(t)
		})
		t.Run("SpawnFromClosedHop", func(t *testing.T) {
			// A hop the spawner once held, in a run that has ended.
			tk := spawner.delegatedTo(t)
			tk.finish(t, nil)
			run, body := rootInvoke(spawner, &schemas.SpawnRef{RunID: tk.Run, HopID: tk.Hop})
			spawner.wantDenied(t, run, body, nil, schemas.ReasonParent, "ended")
			noAllowedHop(t, run)
		})
		t.Run("SpawnFromMadeUpHop", func(t *testing.T) {
			run, body := rootInvoke(spawner, &schemas.SpawnRef{RunID: open.ID, HopID: schemas.NewID()})
			spawner.wantDenied(t, run, body, nil, schemas.ReasonParent, "not an allowed hop")
			noAllowedHop(t, run)
		})
		t.Run("SpawnFromOwnRunItself", func(t *testing.T) {
			env := spawner.envelope(schemas.KindInvoke)
			env.RunID, env.To, env.Message = schemas.NewID(), "research", message("x")
			env.SpawnedFrom = &schemas.SpawnRef{RunID: env.RunID, HopID: schemas.NewID()}
			env.HopID = env.DerivedHopID()
			spawner.wantDenied(t, env.RunID, spawner.sign(t, env), nil, schemas.ReasonMalformed, "spawned_from")
		})
		t.Run("PermittedSpawnInheritsPrincipalAndDepth", func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			r, err := g.cast.tomas.Start(ctx, "orchestrator", agent.UserText("spawn"))
			if err != nil {
				t.Fatal(err)
			}
			spawned, text, _ := strings.Cut(agent.MessageText(r.Output), " ")
			if text != "research: spawned" {
				t.Fatalf("spawn replied %q", agent.MessageText(r.Output))
			}
			parent := g.ops.verified(t, r.RunID)
			recs := g.ops.verified(t, spawned)
			data, err := recs[0].Event.DecodeData()
			if err != nil {
				t.Fatal(err)
			}
			start := data.(*schemas.RunStarted)
			if start.OnBehalfOf != "tomas" || start.Caller != "orchestrator" || start.SpawnedFrom == nil ||
				start.SpawnedFrom.RunID != r.RunID || start.SpawnedFrom.HopID != r.HopID {
				t.Fatalf("spawned run.started: %+v", start)
			}
			pdata, _ := parent[0].Event.DecodeData()
			if got, want := *start.Limits, *pdata.(*schemas.RunStarted).Limits; got != want {
				t.Errorf("spawned run's limits %+v, parent's %+v", got, want)
			}
			hop := decisionOf(t, recs[1])
			if recs[1].Event.Type != schemas.EventHopAllowed || hop.Depth != 1 || hop.OnBehalfOf != "tomas" ||
				strings.Join(hop.Ancestry, ",") != "tomas,orchestrator" {
				t.Fatalf("spawned hop: %s depth %d on behalf of %s ancestry %v", recs[1].Event.Type, hop.Depth, hop.OnBehalfOf, hop.Ancestry)
			}
		})
		t.Run("LegitimateRunAfter", func(t *testing.T) {
			open.release()
			if err := <-open.done; err != nil {
				t.Fatal(err)
			}
			g.cast.legit(t)
		})
	})
}

// TestHopIDs: hop ids of invokes are derived from their scope, so one
// cannot be reused across runs or made up; a second legitimate run is
// still delivered.
func TestHopIDs(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		eve := g.attacker(t, "eve") // a user: users start runs
		mallory := g.attacker(t, "mallory")
		first := g.cast.legit(t)
		firstRoot := schemas.DeriveHopID(schemas.RunScope(first), "")

		root := func(hop string) (string, []byte) {
			env := eve.envelope(schemas.KindInvoke)
			env.RunID, env.To, env.Message, env.HopID = schemas.NewID(), "orchestrator", message("delegate"), hop
			return env.RunID, eve.sign(t, env)
		}
		t.Run("RootHopIDOfAnotherRun", func(t *testing.T) {
			run, body := root(firstRoot)
			eve.wantDenied(t, run, body, nil, schemas.ReasonMalformed, "not derived")
			if recs := g.ops.read(t, run); len(recs) != 0 {
				t.Fatalf("the run was started: %d events", len(recs))
			}
		})
		t.Run("MadeUpRootHopID", func(t *testing.T) {
			run, body := root(schemas.NewID())
			eve.wantDenied(t, run, body, nil, schemas.ReasonMalformed, "not derived")
		})
		t.Run("DelegationHopIDNotDerived", func(t *testing.T) {
			tk := mallory.delegatedTo(t)
			before := g.ops.read(t, tk.Run)
			for _, hop := range []string{firstRoot, schemas.NewID(), tk.Hop} {
				env := mallory.envelope(schemas.KindInvoke)
				env.RunID, env.ParentHopID, env.To, env.Message, env.HopID = tk.Run, tk.Hop, "research", message("x"), hop
				mallory.wantDenied(t, tk.Run, mallory.sign(t, env), nil, schemas.ReasonMalformed, "")
			}
			after := g.ops.read(t, tk.Run)
			if countEvents(after, schemas.EventHopAllowed) != countEvents(before, schemas.EventHopAllowed) {
				t.Fatal("a non-derived hop was allowed")
			}
			tk.finish(t, nil)
		})
		t.Run("SameDelegationTwice", func(t *testing.T) {
			// A re-sent delegation names the same hop; the target gets it
			// once, and the caller its recorded outcome.
			tk := mallory.delegatedTo(t)
			env := mallory.envelope(schemas.KindInvoke)
			env.RunID, env.ParentHopID, env.To, env.Message = tk.Run, tk.Hop, "research", message("once")
			env.HopID = env.DerivedHopID()
			mallory.submit(t, tk.Run, mallory.sign(t, env), nil)
			_, m := mallory.await(t, 20*time.Second, "research's reply", func(d *schemas.Delivery) bool {
				return d.Kind == schemas.DeliverReply && d.Context.HopID == env.HopID
			})
			_ = m.Ack()
			// The same call again (a task re-run after a crash) is answered
			// with the recorded reply; the hop does not run again.
			env.SentAt = env.SentAt.Add(time.Millisecond)
			mallory.submit(t, tk.Run, mallory.sign(t, env), nil)
			_, m = mallory.await(t, 20*time.Second, "the recorded reply", func(d *schemas.Delivery) bool {
				return d.Kind == schemas.DeliverReply && d.Context.HopID == env.HopID
			})
			_ = m.Ack()
			// The same hop id for another call is denied.
			other := *env
			other.To, other.SentAt = "writer", time.Now().UTC()
			mallory.wantDenied(t, tk.Run, mallory.sign(t, &other), nil, schemas.ReasonReplay, "another call")
			recs := g.ops.verified(t, tk.Run)
			n := 0
			for _, r := range recs {
				if r.Event.Type == schemas.EventHopAllowed && r.Event.HopID == env.HopID {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("hop %s allowed %d times", env.HopID, n)
			}
			tk.finish(t, nil)
		})
		t.Run("LegitimateSecondRun", func(t *testing.T) {
			g.cast.legit(t)
		})
	})
}

// TestMalformedSubject: a submission on a subject that is not a valid
// submit subject of the sender's still gets a denial back to the sender.
func TestMalformedSubject(t *testing.T) {
	eachVariant(t, setup{}, func(t *testing.T, g *gw) {
		mallory := g.attacker(t, "mallory")
		for _, tc := range []struct{ name, suffix string }{
			{"ExtraToken", "a.b"},
			{"InvalidRunToken", "_run"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := g.ops.snapshot(t)
				d := mallory.wantDenied(t, tc.suffix, []byte(`{"v":1}`), nil, schemas.ReasonMalformed, "")
				if d.Denial.SubmitSeq == 0 {
					t.Fatal("the denial names no submission")
				}
				if own := g.ops.onlyOwnRejections(t, before, "mallory"); len(own) != 1 {
					t.Fatalf("%d rejection entries", len(own))
				}
				g.cast.legit(t)
			})
		}
	})
}
