package broker

import (
	"github.com/nats-io/nats-server/v2/server"
)

// IdentityPermissions are the NATS permissions of an identity's user
// inside its own account: it may publish only its own submissions, read
// only its own deliveries through its own durable consumer, and receive
// replies only under its own inbox prefix. They are defence in depth: the
// account's imports are what bound its reach (see AccountsConfig), and the
// permissions make a wrong publish fail loudly instead of going nowhere.
func (s Subjects) IdentityPermissions(id string) *server.Permissions {
	var allow []string
	for _, e := range s.identityExports(id) {
		allow = append(allow, e.importedAs())
	}
	allow = append(allow, userInfoSubject)
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: allow},
		Subscribe: &server.SubjectPermission{
			Allow: inboxes(id),
		},
	}
}

// OperatorPermissions are the NATS permissions of an operator's user
// inside its own account: send control commands (halt a run), watch
// alerts, and read the ledger with direct gets and stream info. Nothing
// that changes a stream, a consumer or a message is reachable; reads never
// create a consumer (a consumer's deliver subject would be a subject the
// operator names, in the gateway's account).
func (s Subjects) OperatorPermissions(id string) *server.Permissions {
	var allow []string
	for _, e := range s.operatorExports() {
		if !e.stream {
			allow = append(allow, e.importedAs())
		}
	}
	allow = append(allow, userInfoSubject)
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: allow},
		Subscribe: &server.SubjectPermission{
			Allow: append(inboxes(id), s.AlertAll()),
		},
	}
}

// inboxes are the reply subjects an identity or operator may subscribe to:
// its own inbox prefix, and the default one, which any NATS client uses.
// Its account is its own, so no one else's replies can reach either.
func inboxes(id string) []string {
	return []string{InboxPrefix(id) + ".>", "_INBOX.>"}
}
