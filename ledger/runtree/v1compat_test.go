package runtree_test

import (
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
)

// TestVerifyEnvelopeV1Run reads a run recorded by the gateway before the
// envelope moved to schema version 2 (testdata/v1run: the incident demo,
// exported with 'tollgate runs export', and its cast's public keys). Runs
// recorded with v1 envelopes must keep verifying and replaying.
func TestVerifyEnvelopeV1Run(t *testing.T) {
	read, err := broker.ReadKeyDir("testdata/v1run")
	if err != nil {
		t.Fatal(err)
	}
	keys := ledger.Keys{}
	for id, pubs := range read {
		for _, p := range pubs {
			keys.Add(id, p)
		}
	}
	v, err := runtree.VerifyCopy("testdata/v1run/run.jsonl", nil, "", keys)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Signatures != ledger.SigVerified {
		t.Fatalf("v1 run does not verify: ok=%v signatures=%s first break %+v", v.OK(), v.Signatures, v)
	}
	run, err := runtree.FromVerified(v)
	if err != nil {
		t.Fatal(err)
	}
	if run.Allowed() != 4 || len(run.AgentCosts()) == 0 {
		t.Fatalf("v1 run folds to %d allowed hops, costs %v", run.Allowed(), run.AgentCosts())
	}
	if v.Events != 11 {
		t.Fatalf("v1 run has %d events, want 11", v.Events)
	}
}
