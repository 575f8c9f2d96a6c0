package broker

import (
	"github.com/nats-io/nats-server/v2/server"
)

// IdentityPermissions are the NATS permissions of an identity: it may
// publish only its own submissions, read only its own deliveries through its
// own durable consumer, and receive replies only under its own inbox prefix.
// No JetStream management API is reachable, so it can neither create,
// update, purge nor delete any stream or message.
func (s Subjects) IdentityPermissions(id string) *server.Permissions {
	deliver, consumer := s.Stream(StreamDeliver), AgentConsumer(id)
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{
				s.SubmitFor(id),
				jsConsumerNext(deliver, consumer),
				jsConsumerInfo(deliver, consumer),
				jsAck(deliver, consumer),
				jsAPIInfo,
			},
		},
		Subscribe: &server.SubjectPermission{
			Allow: []string{InboxPrefix(id) + ".>"},
		},
	}
}

// OperatorPermissions let an operator send control commands (halt a run),
// watch alerts, and read the ledger (replay, runs list) through JetStream's
// read APIs: stream info, message gets, and short-lived consumers of its
// own (an ordered consumer deletes itself when done). Nothing that changes a
// stream or a message is allowed, nor touching the projector's consumer.
func (s Subjects) OperatorPermissions(id string) *server.Permissions {
	ledger := s.Stream(StreamLedger)
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{
				s.CtlAll(),
				jsAPIInfo,
				"$JS.API.STREAM.INFO." + ledger,
				"$JS.API.STREAM.MSG.GET." + ledger,
				"$JS.API.DIRECT.GET." + ledger,
				"$JS.API.DIRECT.GET." + ledger + ".>",
				"$JS.API.CONSUMER.CREATE." + ledger + ".>",
				"$JS.API.CONSUMER.INFO." + ledger + ".>",
				"$JS.API.CONSUMER.MSG.NEXT." + ledger + ".>",
				"$JS.API.CONSUMER.DELETE." + ledger + ".>",
			},
			Deny: []string{
				"$JS.API.CONSUMER.DELETE." + ledger + "." + ProjectorConsumer,
				"$JS.API.CONSUMER.CREATE." + ledger + "." + ProjectorConsumer,
				"$JS.API.CONSUMER.CREATE." + ledger + "." + ProjectorConsumer + ".>",
			},
		},
		Subscribe: &server.SubjectPermission{
			Allow: []string{InboxPrefix(id) + ".>", s.AlertAll()},
		},
	}
}

// NkeyUsers returns the server's nkey users: one per enabled identity with
// a key and IdentityPermissions, one per operator key, and the gateway's own
// unrestricted user.
func (s Subjects) NkeyUsers(dir *Directory, gatewayKey string, operators map[string]string) []*server.NkeyUser {
	users := []*server.NkeyUser{{Nkey: gatewayKey}}
	for _, id := range dir.All() {
		if id.PublicKey == "" || id.Disabled {
			continue
		}
		users = append(users, &server.NkeyUser{Nkey: id.PublicKey, Permissions: s.IdentityPermissions(id.ID)})
	}
	for id, key := range operators {
		users = append(users, &server.NkeyUser{Nkey: key, Permissions: s.OperatorPermissions(id)})
	}
	return users
}
