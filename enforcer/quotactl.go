package enforcer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/schemas"
)

// onQuotaStatus answers an operator's signed request for the state of the
// spend quotas (tg.ctl.quota): the quota bucket lives in the gateway
// account, which an operator's key cannot read, so the enforcer reads it
// for them (QuotaUsage) after checking the signature against the
// operator's registered key, as for a halt.
func (e *Enforcer) onQuotaStatus(m *nats.Msg) {
	reply := func(r schemas.QuotaStatusReply) {
		b, _ := json.Marshal(r)
		if limit := e.js.Conn().MaxPayload(); int64(len(b)) > limit {
			b, _ = json.Marshal(schemas.QuotaStatusReply{Error: fmt.Sprintf(
				"the quotas' state is %d bytes, more than one NATS message holds (%d): read it with tollgate quota status --data or the gateway's credentials", len(b), limit)})
		}
		if err := m.Respond(b); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
			e.cfg.Logger.Debug("quota status answer", "err", err)
		}
	}
	req, err := schemas.DecodeQuotaStatusRequest(m.Data)
	if err == nil {
		err = e.verifyOperator(schemas.CmdQuotaStatus, req.By, m.Data, req.SentAt)
	}
	if err != nil {
		e.cfg.Logger.Warn("quota status request refused", "err", err)
		reply(schemas.QuotaStatusReply{Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	defer cancel()
	usage, err := e.QuotaUsage(ctx)
	if err != nil {
		reply(schemas.QuotaStatusReply{Error: fmt.Sprintf("read the quotas: %v", err)})
		return
	}
	if usage == nil {
		usage = []quota.Usage{}
	}
	b, err := json.Marshal(usage)
	if err != nil {
		reply(schemas.QuotaStatusReply{Error: fmt.Sprintf("encode the quotas: %v", err)})
		return
	}
	reply(schemas.QuotaStatusReply{OK: true, Quotas: b})
}
