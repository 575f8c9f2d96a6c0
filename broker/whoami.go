package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// userInfoSubject is nats-server's "who am I" request: every account
// imports it from the system account, and the answer names the account
// the requesting connection is in.
const userInfoSubject = "$SYS.REQ.USER.INFO"

// Owner says whose key a connection holds, from the account the server put
// it in: the gateway's own, an identity's or an operator's.
type Owner struct {
	// Kind is "gateway", "identity", "operator", or "" when the account is
	// none of the gateway's.
	Kind string
	// ID is the identity's or operator's id.
	ID string
	// Account is the account's name.
	Account string
}

// Owner kinds.
const (
	OwnerGateway  = "gateway"
	OwnerIdentity = "identity"
	OwnerOperator = "operator"
)

// String names the key's owner for people: "operator ops's key",
// "identity research's key".
func (o Owner) String() string {
	switch o.Kind {
	case OwnerGateway:
		return "the gateway's own key"
	case "":
		return "a key of account " + o.Account + " (not a Tollgate identity)"
	}
	return o.Kind + " " + o.ID + "'s key"
}

// OwnerOf maps an account name to its owner.
func (s Subjects) OwnerOf(account string) Owner {
	o := Owner{Account: account}
	switch {
	case account == s.GatewayAccount():
		o.Kind = OwnerGateway
	case strings.HasPrefix(account, s.IdentityAccount("")):
		o.Kind, o.ID = OwnerIdentity, strings.TrimPrefix(account, s.IdentityAccount(""))
	case strings.HasPrefix(account, s.OperatorAccount("")):
		o.Kind, o.ID = OwnerOperator, strings.TrimPrefix(account, s.OperatorAccount(""))
	}
	return o
}

// WhoAmI asks the server which account nc is in. ErrWhoAmIUnavailable means
// the server could not say (no system account, an older server); callers
// then carry on unchecked.
func (s Subjects) WhoAmI(ctx context.Context, nc *nats.Conn) (Owner, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	// The answer comes to a subject of the default inbox, which every
	// account may receive on: the connection's own inbox prefix is the
	// one a wrong key may not use.
	sub, err := nc.SubscribeSync(nats.InboxPrefix + nuid.Next())
	if err != nil {
		return Owner{}, fmt.Errorf("%w: %w", ErrWhoAmIUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(userInfoSubject, sub.Subject, nil); err != nil {
		return Owner{}, fmt.Errorf("%w: %w", ErrWhoAmIUnavailable, err)
	}
	m, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return Owner{}, fmt.Errorf("%w: %w", ErrWhoAmIUnavailable, err)
	}
	var resp struct {
		Data *struct {
			Account     string `json:"account"`
			AccountName string `json:"account_name"`
		} `json:"data"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Data == nil {
		return Owner{}, fmt.Errorf("%w: unreadable answer %q", ErrWhoAmIUnavailable, m.Data)
	}
	acc := resp.Data.AccountName
	if acc == "" {
		acc = resp.Data.Account
	}
	return s.OwnerOf(acc), nil
}

// CheckOwner fails fast when a connection's key is not the one wanted: it
// asks the server whose key nc holds (WhoAmI) and returns an error wrapping
// ErrWrongKey that names the owner when it is not kind/id (id "" accepts
// any of that kind). When the server cannot say, or the account is not one
// of the gateway's layout, it returns no error: the first real request
// fails instead.
func (s Subjects) CheckOwner(ctx context.Context, nc *nats.Conn, what, kind, id string) (Owner, error) {
	o, err := s.WhoAmI(ctx, nc)
	if errors.Is(err, ErrWhoAmIUnavailable) {
		return Owner{}, nil
	}
	if err != nil {
		return Owner{}, err
	}
	if o.Kind == "" || (o.Kind == kind && (id == "" || o.ID == id)) {
		// An account outside the gateway's layout (a bare server, a
		// test's single account) says nothing about the key.
		return o, nil
	}
	want := "an " + kind + "'s key"
	if id != "" {
		want = kind + " " + id + "'s key"
	}
	return o, fmt.Errorf("%w: %s is %s, not %s", ErrWrongKey, what, o, want)
}
