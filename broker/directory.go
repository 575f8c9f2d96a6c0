package broker

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/schemas"
)

// Identity is one registered principal: a user, agent, tool or model. Its
// id is its subject token, so one identity can never pose as another.
type Identity struct {
	ID   string
	Type schemas.PrincipalType
	Team string
	Tags []string
	// PublicKey is the identity's nkey public key ("U..."). It is both its
	// NATS credential and the Ed25519 key its envelopes are signed with.
	PublicKey string
	// RequireSignature makes the enforcer refuse unsigned envelopes.
	RequireSignature bool
	// Timeout is how long a hop to this identity may stay open.
	Timeout time.Duration
	// Disabled identities cannot connect and every submission of theirs is
	// denied.
	Disabled bool
	// Workflow is the workflow a run entered at this agent belongs to.
	Workflow string
	// Untrusted marks an identity whose content is not to be trusted (a
	// tool reading the web, a model, a third party's agent): the hops it
	// makes and the replies it sends are tainted (see docs/guardrails.md).
	Untrusted bool
	// Environment is the deployment environment the identity runs in
	// (production, staging, ...): spend quotas may be set per environment.
	Environment string
	// Resource is the identity's id as a Cedar resource when it is not ID:
	// a tool an MCP server serves is Tool::"<server>/<tool>"
	// (schemas.ToolResource). Only tools have one; empty: ID.
	Resource string
	// RateLimit bounds the hops to the identity, across all its callers
	// and every gateway instance (a tool's rate_limit); the enforcer
	// checks it at admission. Zero: none.
	RateLimit ratelimit.Rate

	pub ed25519.PublicKey
	// verifier checks signatures by pub with the key decoded once; nil
	// when pub is not a curve point (no signature verifies then).
	verifier *schemas.Verifier
}

// SigningKey returns the Ed25519 public key, nil when none is registered.
func (i *Identity) SigningKey() ed25519.PublicKey { return i.pub }

// VerifyEnvelope checks the signature of an envelope in wire form as
// schemas.VerifySignature does with the identity's key, with the key
// decoded once per directory instead of once per envelope.
func (i *Identity) VerifyEnvelope(compact []byte) error {
	if i.verifier == nil {
		return schemas.VerifySignature(compact, i.pub)
	}
	return i.verifier.VerifyEnvelope(compact)
}

// IsCaller reports whether the identity may submit (users and agents may;
// tools and models only reply).
func (i *Identity) IsCaller() bool { return i.Type == schemas.TypeUser || i.Type == schemas.TypeAgent }

// Directory is an immutable set of identities, safe for concurrent use.
type Directory struct {
	byID  map[string]*Identity
	order []string
}

// NewDirectory checks and indexes identities. It reports every problem at
// once: bad or duplicate ids, unknown types, unparsable keys, a required
// signature without a key.
func NewDirectory(ids []Identity) (*Directory, error) {
	d := &Directory{byID: make(map[string]*Identity, len(ids))}
	resources := map[string]string{}
	var errs []error
	for i := range ids {
		id := ids[i]
		where := fmt.Sprintf("identity %q", id.ID)
		if err := schemas.CheckPrincipalID(id.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if id.ID == schemas.GatewayActor {
			// The ledger names the gateway itself by this id (a hop it
			// closed, a halt after a breach): no identity may carry it.
			errs = append(errs, fmt.Errorf("%s: the id is reserved for the gateway itself", where))
			continue
		}
		if _, dup := d.byID[id.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: registered twice (ids are unique across users, agents, tools and models)", where))
			continue
		}
		switch id.Type {
		case schemas.TypeUser, schemas.TypeAgent, schemas.TypeTool, schemas.TypeModel:
		default:
			errs = append(errs, fmt.Errorf("%s: type %q is not User, Agent, Tool or Model", where, id.Type))
		}
		if id.PublicKey != "" {
			pub, err := ParsePublicKey(id.PublicKey)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
			id.pub = pub
			if pub != nil {
				id.verifier, _ = schemas.NewVerifier(pub) // nil: no signature verifies, as with VerifySignature
			}
		} else if id.RequireSignature {
			errs = append(errs, fmt.Errorf("%s: require_signature needs a public_key", where))
		}
		if id.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s: timeout must not be negative", where))
		}
		if id.Resource != "" {
			if id.Type != schemas.TypeTool {
				errs = append(errs, fmt.Errorf("%s: only a tool has a resource name other than its id", where))
			} else if err := schemas.CheckToolResource(id.Resource); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			} else if other, dup := resources[id.Resource]; dup {
				errs = append(errs, fmt.Errorf("%s: resource Tool::%q is also %q's", where, id.Resource, other))
			}
			resources[id.Resource] = id.ID
		}
		id.Tags = slices.Clone(id.Tags)
		d.byID[id.ID] = &id
		d.order = append(d.order, id.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return d, nil
}

// Get returns the identity registered under id.
func (d *Directory) Get(id string) (*Identity, bool) {
	i, ok := d.byID[id]
	return i, ok
}

// All returns every identity in registration order.
func (d *Directory) All() []*Identity {
	out := make([]*Identity, 0, len(d.order))
	for _, id := range d.order {
		out = append(out, d.byID[id])
	}
	return out
}

// ResourceID is the identity's id as a Cedar resource: Resource when
// set, else ID.
func (i *Identity) ResourceID() string {
	if i.Resource != "" {
		return i.Resource
	}
	return i.ID
}

// ParsePublicKey decodes an nkey user public key ("U...") to Ed25519.
func ParsePublicKey(pk string) (ed25519.PublicKey, error) {
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(pk))
	if err != nil {
		return nil, fmt.Errorf("public_key %q is %w: %w", pk, ErrPublicKey, err)
	}
	return ed25519.PublicKey(raw), nil
}
