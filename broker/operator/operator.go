// Package operator is the operators' client of a running gateway: it
// connects with an operator's key and sends signed control commands on
// tg.ctl.> (halt a run, approve or reject a hop held for approval, reload
// the gateway's config, read the spend quotas), which
// the enforcer checks against the operators registered in its config.
package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// Config says who the operator is and where the gateway is.
type Config struct {
	// ID is the operator's id as registered in the gateway config.
	ID string
	// Key is the operator's nkey (its NATS credential and signing key).
	Key nkeys.KeyPair
	// URL of the gateway's NATS server.
	URL string
	// InProcess, when set, connects to an embedded server without a
	// socket (a console served by the gateway that embeds it); URL is then
	// ignored.
	InProcess *broker.Embedded
	// Subjects must match the gateway's; default broker.DefaultSubjects().
	Subjects *broker.Subjects
}

// Client sends an operator's commands.
type Client struct {
	cfg  Config
	subj broker.Subjects
	nc   *nats.Conn
}

// Connect connects as the operator. A key that is not operator cfg.ID's
// is refused at once with an error wrapping broker.ErrWrongKey that names
// whose key it is.
func Connect(cfg Config) (*Client, error) {
	return ConnectContext(context.Background(), cfg)
}

// ConnectContext is Connect with a context bounding the key check.
func ConnectContext(ctx context.Context, cfg Config) (*Client, error) {
	if err := schemas.CheckPrincipalID(cfg.ID); err != nil {
		return nil, fmt.Errorf("operator: %w", err)
	}
	if cfg.Key == nil {
		return nil, errors.New("operator: a key is required")
	}
	subj := broker.DefaultSubjects()
	if cfg.Subjects != nil {
		subj = *cfg.Subjects
	}
	nc, err := broker.Connect(broker.ConnectConfig{URL: cfg.URL, InProcess: cfg.InProcess, Key: cfg.Key, InboxPrefix: broker.InboxPrefix(cfg.ID),
		Name: "tollgate operator " + cfg.ID, Options: []nats.Option{nats.MaxReconnects(2)}})
	if err != nil {
		return nil, err
	}
	if _, err := subj.CheckOwner(ctx, nc, "the key given for operator "+cfg.ID, broker.OwnerOperator, cfg.ID); err != nil {
		nc.Close()
		return nil, fmt.Errorf("operator: %w", err)
	}
	return &Client{cfg: cfg, subj: subj, nc: nc}, nil
}

// Close closes the connection.
func (c *Client) Close() { c.nc.Close() }

// Halt halts a run: the gateway records run.halted with reason, cancels
// the run's open hops and publishes an alert. Halting a halted run is not
// an error (the reply says Already). A refusal wraps ErrRefused; no answer
// in time, ErrNoAnswer.
func (c *Client) Halt(ctx context.Context, run, reason string) (*schemas.HaltReply, error) {
	if reason == "" {
		return nil, errors.New("operator: a halt needs a reason: the ledger and the alert record it")
	}
	what := "halt " + run
	reply, err := command[schemas.HaltReply](ctx, c, c.subj.CtlHalt(run), what,
		&schemas.HaltRequest{Version: schemas.Version, Cmd: schemas.CmdHalt, RunID: run, By: c.cfg.ID, Reason: reason, SentAt: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	if reply.Error != "" && !reply.OK {
		return reply, fmt.Errorf("%w: %s: %s", ErrRefused, what, reply.Error)
	}
	return reply, nil
}

// Approve releases a hop held for approval: the gateway records
// hop.approved and delivers the invoke to its target. note is recorded.
// The operator must be in one of the hop's approver groups. A refusal
// wraps ErrRefused; no answer in time, ErrNoAnswer.
func (c *Client) Approve(ctx context.Context, run, hop, note string) (*schemas.ApprovalReply, error) {
	return c.answer(ctx, run, hop, true, note)
}

// Reject closes a hop held for approval unforwarded: the gateway records
// hop.rejected and tells its caller (reason approval) why: note, which is
// required.
func (c *Client) Reject(ctx context.Context, run, hop, note string) (*schemas.ApprovalReply, error) {
	if note == "" {
		return nil, errors.New("operator: a rejection needs a note: the caller is told it")
	}
	return c.answer(ctx, run, hop, false, note)
}

func (c *Client) answer(ctx context.Context, run, hop string, approve bool, note string) (*schemas.ApprovalReply, error) {
	verb := "approve"
	if !approve {
		verb = "reject"
	}
	what := fmt.Sprintf("%s hop %s of run %s", verb, hop, run)
	reply, err := command[schemas.ApprovalReply](ctx, c, c.subj.CtlApprove(run), what,
		&schemas.ApprovalRequest{Version: schemas.Version, Cmd: schemas.CmdApprove, RunID: run, HopID: hop, By: c.cfg.ID, Approve: approve, Note: note, SentAt: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	if !reply.OK {
		return reply, fmt.Errorf("%w: %s: %s", ErrRefused, what, reply.Error)
	}
	return reply, nil
}

// Reload asks the gateways to re-read their config file (policies, audit
// policies, limits, workflows, identities), as SIGHUP does; reason is
// logged. A config that fails validation is refused with every problem
// listed (wrapping ErrRefused) and the running one stays.
func (c *Client) Reload(ctx context.Context, reason string) (*schemas.ReloadReply, error) {
	reply, err := command[schemas.ReloadReply](ctx, c, c.subj.CtlReload(), "reload",
		&schemas.ReloadRequest{Version: schemas.Version, Cmd: schemas.CmdReload, By: c.cfg.ID, Reason: reason, SentAt: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	if !reply.OK {
		return reply, fmt.Errorf("%w: reload: %s", ErrRefused, reply.Error)
	}
	return reply, nil
}

// QuotaStatus asks the gateway for the state of every spend quota, read
// fleet-wide from its KV bucket (which the operator's account cannot
// read): the reply's Quotas is a JSON array of quota.Usage. A refusal
// (not a registered operator, a bad signature) wraps ErrRefused; no answer
// in time, ErrNoAnswer.
func (c *Client) QuotaStatus(ctx context.Context) (*schemas.QuotaStatusReply, error) {
	reply, err := command[schemas.QuotaStatusReply](ctx, c, c.subj.CtlQuota(), "quota status",
		&schemas.QuotaStatusRequest{Version: schemas.Version, Cmd: schemas.CmdQuotaStatus, By: c.cfg.ID, SentAt: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	if !reply.OK {
		return reply, fmt.Errorf("%w: quota status: %s", ErrRefused, reply.Error)
	}
	return reply, nil
}

// command signs req as this operator's control request, sends it to
// subject and decodes the gateway's answer; what names the command in
// errors. No answer in time wraps ErrNoAnswer.
func command[R any](ctx context.Context, c *Client, subject, what string, req any) (*R, error) {
	body, err := schemas.Encode(req)
	if err != nil {
		return nil, err
	}
	signed, _, err := schemas.SignObject(body, schemas.ControlSigningContext, c.cfg.Key.Sign)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", what, err)
	}
	m, err := c.nc.RequestWithContext(ctx, subject, signed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (%w)", what, ErrNoAnswer, err)
	}
	var reply R
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return nil, fmt.Errorf("%s: unreadable answer: %w", what, err)
	}
	return &reply, nil
}
