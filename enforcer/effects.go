package enforcer

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// delivery is one message to forward.
type delivery struct {
	subject string
	data    []byte
}

// effects returns the deliveries a ledger record calls for. It is the same
// whether the record was just appended or is found again when a submission
// is redelivered after a crash, so forwarding is repeatable; the broker
// refuses the second write of any delivery subject.
func (e *Enforcer) effects(st *ledger.State, rec ledger.Record, sub *submission) ([]delivery, error) {
	ev := &rec.Event
	data, err := ev.DecodeData()
	if err != nil {
		return nil, fmt.Errorf("effects of %s seq %d: %w", ev.RunID, ev.Seq, err)
	}
	switch d := data.(type) {
	case *schemas.HopDecision:
		if ev.Type == schemas.EventHopAllowed {
			hop := st.Hops[ev.HopID]
			if hop == nil {
				return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
			}
			return e.deliver(hop.To, hop.ID, schemas.DeliverInvoke, d.Envelope, contextOf(st, hop), ev.Seq, nil)
		}
		if !schemas.ValidPrincipalID(d.From) {
			return nil, nil // nobody to tell: the subject named no valid identity
		}
		hc := schemas.Context{RunID: st.RunID, HopID: ev.HopID, ParentHopID: d.ParentHopID, Depth: d.Depth, Ancestry: d.Ancestry, OnBehalfOf: d.OnBehalfOf}
		if !st.Started {
			hc.RunID = sub.runToken
		}
		denial := &schemas.Denial{Reason: d.Reason, Message: d.Message, PolicyIDs: d.PolicyIDs, SubmitKind: d.Kind, SubmitSeq: sub.seq}
		return e.deliver(d.From, sub.denialToken(), schemas.DeliverDenied, d.Envelope, hc, ev.Seq, denial)
	case *schemas.HopCompleted:
		hop := st.Hops[ev.HopID]
		if hop == nil {
			return nil, fmt.Errorf("effects: hop %s of run %s is not in its state", ev.HopID, ev.RunID)
		}
		if d.By == hop.To {
			return e.deliver(hop.From, hop.ID, schemas.DeliverReply, d.Envelope, contextOf(st, hop), ev.Seq, nil)
		}
		return e.deliver(hop.To, hop.ID, schemas.DeliverCancel, d.Envelope, contextOf(st, hop), ev.Seq, nil)
	}
	return nil, nil
}

func contextOf(st *ledger.State, hop *ledger.Hop) schemas.Context {
	return schemas.Context{
		RunID: st.RunID, HopID: hop.ID, ParentHopID: hop.ParentID, Depth: hop.Depth,
		Ancestry: hop.Ancestry, OnBehalfOf: st.OnBehalfOf, Deadline: hop.Deadline,
	}
}

func (e *Enforcer) deliver(to, token string, kind schemas.DeliveryKind, envelope []byte, hc schemas.Context, seq uint64, denial *schemas.Denial) ([]delivery, error) {
	d := schemas.Delivery{Version: schemas.Version, Kind: kind, Envelope: envelope, Context: hc, Denial: denial, LedgerSeq: seq}
	data, err := schemas.Encode(&d)
	if err != nil {
		return nil, fmt.Errorf("encode %s delivery: %w", kind, err)
	}
	return []delivery{{subject: e.subjects.Deliver(to, token, kind), data: data}}, nil
}

// publish forwards deliveries without waiting: each is written once
// (expected last subject sequence 0); the futures tell when they are stored.
func (e *Enforcer) publish(ds []delivery) ([]jetstream.PubAckFuture, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(ds))
	for _, d := range ds {
		msg := nats.NewMsg(d.subject)
		msg.Data = d.data
		f, err := e.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			return futures, fmt.Errorf("forward to %s: %w", d.subject, err)
		}
		futures = append(futures, f)
	}
	return futures, nil
}
