package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// HaltRequest is an operator's kill switch for a run, sent as a NATS request
// on tg.ctl.halt.<run> and signed with the operator's key
// (ControlSigningContext, signature as the last member).
type HaltRequest struct {
	Version   int       `json:"v"`
	RunID     string    `json:"run_id"`
	By        string    `json:"by"`
	Reason    string    `json:"reason"`
	SentAt    time.Time `json:"sent_at"`
	Signature string    `json:"signature,omitempty"`
}

// HaltReply answers a HaltRequest.
type HaltReply struct {
	OK bool `json:"ok"`
	// Already is set when the run was halted before this request.
	Already bool `json:"already,omitempty"`
	// LedgerSeq is the seq of the run.halted event.
	LedgerSeq uint64   `json:"ledger_seq,omitempty"`
	OpenHops  []string `json:"open_hops,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// DecodeHaltRequest decodes and checks a halt request (not its signature).
func DecodeHaltRequest(data []byte) (*HaltRequest, error) {
	var r HaltRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, malformed("halt request", err)
	}
	switch {
	case r.Version != Version:
		return nil, versionErr(r.Version)
	case !ValidID(r.RunID):
		return nil, fmt.Errorf("%w: run_id %q is not a valid id", ErrMalformed, r.RunID)
	case !ValidPrincipalID(r.By):
		return nil, fmt.Errorf("%w: by %q is not a valid id", ErrMalformed, r.By)
	case r.Reason == "":
		return nil, fmt.Errorf("%w: a halt needs a reason", ErrMalformed)
	case r.SentAt.IsZero():
		return nil, fmt.Errorf("%w: sent_at is missing", ErrMalformed)
	}
	return &r, nil
}
