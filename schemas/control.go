package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// The control commands. Every signed control request names the one command
// it was signed for in its "cmd" member, and broker.VerifyControl refuses
// it for any other: all commands share ControlSigningContext, so without
// it a request signed for one command (a read-only quota status) would be
// a valid request for another (a reload) to anyone who can publish on the
// other command's subject within the replay window.
const (
	CmdHalt        = "halt"
	CmdApprove     = "approve" // approvals and rejections: Approve says which
	CmdReload      = "reload"
	CmdQuotaStatus = "quota.status"
)

// HaltRequest is an operator's kill switch for a run, sent as a NATS request
// on tg.ctl.halt.<run> and signed with the operator's key
// (ControlSigningContext, signature as the last member).
type HaltRequest struct {
	Version int `json:"v"`
	// Cmd is CmdHalt: the command the request is signed for.
	Cmd       string    `json:"cmd"`
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

// ApprovalRequest is an operator's answer to a hop held for approval, sent
// as a NATS request on tg.ctl.approve.<run> and signed with the operator's
// key like a HaltRequest.
type ApprovalRequest struct {
	Version int `json:"v"`
	// Cmd is CmdApprove: the command the request is signed for.
	Cmd   string `json:"cmd"`
	RunID string `json:"run_id"`
	HopID string `json:"hop_id"`
	By    string `json:"by"`
	// Approve releases the hop; false rejects it.
	Approve bool `json:"approve"`
	// Note says why; a rejection needs one (the caller is told it).
	Note      string    `json:"note,omitempty"`
	SentAt    time.Time `json:"sent_at"`
	Signature string    `json:"signature,omitempty"`
}

// ApprovalReply answers an ApprovalRequest.
type ApprovalReply struct {
	OK bool `json:"ok"`
	// LedgerSeq is the seq of the hop.approved or hop.rejected event.
	LedgerSeq uint64 `json:"ledger_seq,omitempty"`
	Error     string `json:"error,omitempty"`
}

// MaxNoteBytes bounds the note of an approval request.
const MaxNoteBytes = 1024

// DecodeApprovalRequest decodes and checks an approval request (not its
// signature).
func DecodeApprovalRequest(data []byte) (*ApprovalRequest, error) {
	var r ApprovalRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, malformed("approval request", err)
	}
	switch {
	case r.Version != Version:
		return nil, versionErr(r.Version)
	case !ValidID(r.RunID):
		return nil, fmt.Errorf("%w: run_id %q is not a valid id", ErrMalformed, r.RunID)
	case !ValidID(r.HopID):
		return nil, fmt.Errorf("%w: hop_id %q is not a valid id", ErrMalformed, r.HopID)
	case !ValidPrincipalID(r.By):
		return nil, fmt.Errorf("%w: by %q is not a valid id", ErrMalformed, r.By)
	case !r.Approve && r.Note == "":
		return nil, fmt.Errorf("%w: a rejection needs a note: the caller is told it", ErrMalformed)
	case len(r.Note) > MaxNoteBytes:
		return nil, fmt.Errorf("%w: the note is over %d bytes", ErrMalformed, MaxNoteBytes)
	case r.SentAt.IsZero():
		return nil, fmt.Errorf("%w: sent_at is missing", ErrMalformed)
	}
	return &r, nil
}

// HopStatus answers an identity's query about a hop it holds (see
// broker.Subjects.Query): whether the hop is open, and how it ended.
type HopStatus struct {
	RunID string `json:"run_id"`
	HopID string `json:"hop_id"`
	// Known is false when the hop is not in the run, or not the asker's
	// (it is neither its caller nor its target).
	Known bool `json:"known"`
	// Open is set while the hop waits for its reply.
	Open bool `json:"open"`
	// Status is open, denied, timed_out, or the terminal state the hop was
	// closed with.
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ReloadRequest asks the gateway to re-read its config file (policies,
// audit policies, limits, workflows, identities), as SIGHUP does. It is
// sent as a NATS request on tg.ctl.reload and signed with the operator's
// key like a HaltRequest.
type ReloadRequest struct {
	Version int `json:"v"`
	// Cmd is CmdReload: the command the request is signed for.
	Cmd string `json:"cmd"`
	By  string `json:"by"`
	// Reason is logged with the reload.
	Reason    string    `json:"reason,omitempty"`
	SentAt    time.Time `json:"sent_at"`
	Signature string    `json:"signature,omitempty"`
}

// ReloadReply answers a ReloadRequest.
type ReloadReply struct {
	OK bool `json:"ok"`
	// Identities and Policies count what is in force after the reload.
	Identities int `json:"identities,omitempty"`
	Policies   int `json:"policies,omitempty"`
	// Error lists every problem of a refused config; the running one
	// stays.
	Error string `json:"error,omitempty"`
}

// DecodeReloadRequest decodes and checks a reload request (not its
// signature).
func DecodeReloadRequest(data []byte) (*ReloadRequest, error) {
	var r ReloadRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, malformed("reload request", err)
	}
	switch {
	case r.Version != Version:
		return nil, versionErr(r.Version)
	case !ValidPrincipalID(r.By):
		return nil, fmt.Errorf("%w: by %q is not a valid id", ErrMalformed, r.By)
	case len(r.Reason) > MaxNoteBytes:
		return nil, fmt.Errorf("%w: the reason is over %d bytes", ErrMalformed, MaxNoteBytes)
	case r.SentAt.IsZero():
		return nil, fmt.Errorf("%w: sent_at is missing", ErrMalformed)
	}
	return &r, nil
}

// QuotaStatusRequest asks the gateway for the state of every spend quota
// (what `tollgate quota status` shows), so that an operator reads them
// with the operator's own key: the quota bucket lives in the gateway
// account. It is sent as a NATS request on tg.ctl.quota and signed with
// the operator's key like a HaltRequest.
type QuotaStatusRequest struct {
	Version int `json:"v"`
	// Cmd is CmdQuotaStatus: the command the request is signed for.
	Cmd       string    `json:"cmd"`
	By        string    `json:"by"`
	SentAt    time.Time `json:"sent_at"`
	Signature string    `json:"signature,omitempty"`
}

// QuotaStatusReply answers a QuotaStatusRequest: Quotas is the JSON array
// of the quotas' usage (quota.Usage, one per quota and scope value), or
// Error says why the request was refused.
type QuotaStatusReply struct {
	OK     bool            `json:"ok"`
	Quotas json.RawMessage `json:"quotas,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// DecodeQuotaStatusRequest decodes and checks a quota status request (not
// its signature).
func DecodeQuotaStatusRequest(data []byte) (*QuotaStatusRequest, error) {
	var r QuotaStatusRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, malformed("quota status request", err)
	}
	switch {
	case r.Version != Version:
		return nil, versionErr(r.Version)
	case !ValidPrincipalID(r.By):
		return nil, fmt.Errorf("%w: by %q is not a valid id", ErrMalformed, r.By)
	case r.SentAt.IsZero():
		return nil, fmt.Errorf("%w: sent_at is missing", ErrMalformed)
	}
	return &r, nil
}
