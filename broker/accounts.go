package broker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The bus is split into NATS accounts, and accounts are the trust
// boundary. The gateway's streams (SUBMIT, DELIVER, LEDGER, ALERTS,
// TIMERS, the rate-limit bucket) live in the gateway account, where only
// the gateway connects. Every identity and every operator connects in an
// account of its own that imports exactly what it needs from the gateway
// account, as services:
//
//   - an identity: its submit subject, its delivery consumer's next-message
//     and info requests, and its consumer's acknowledgements;
//   - an operator: control requests (tg.ctl.>), reads of the ledger (direct
//     gets and stream info, never a consumer), and a stream import of the
//     alerts.
//
// Publish permissions check only the subject a client publishes to, never
// the reply subject it names; with service imports a reply always travels
// back into the importer's own account through a response mapping, so no
// subject an identity names can receive a message with the gateway's rights.

// GatewayAccount is the account of the gateway's streams.
func (s Subjects) GatewayAccount() string { return s.streamPrefix + "TOLLGATE" }

// IdentityAccount is the account an identity connects in.
func (s Subjects) IdentityAccount(id string) string { return s.streamPrefix + "tg-id-" + id }

// OperatorAccount is the account an operator connects in.
func (s Subjects) OperatorAccount(id string) string { return s.streamPrefix + "tg-op-" + id }

// Layout says who may connect to the bus, and so which accounts exist.
type Layout struct {
	// GatewayKeys are the nkey public keys of the gateway's own users.
	GatewayKeys []string
	// Identities are the registered identities; those enabled and with a
	// key get an account.
	Identities []*Identity
	// Operators maps operator ids to their nkey public keys.
	Operators map[string]string
	// SystemKeys, when set, are users of the server's system account (SYS,
	// made the system account), which the gateway uses to have the
	// servers reload their config. For an external server only.
	SystemKeys []string
}

// export is one service (or stream) export of the gateway account.
type export struct {
	subject  string
	stream   bool
	response string // "stream" for multi-message responses
	// threshold is how long the server keeps a request's response mapping
	// waiting for an answer: short for requests answered at once, so
	// requests nobody answers cannot hold server memory for the default
	// two minutes.
	threshold string
	// local is the subject the importing account imports it under, when
	// that differs: JetStream API requests are imported under the
	// gateway's API prefix (Subjects.JSAPIPrefix), because every account
	// already has $JS.API.> wired to its own, disabled, JetStream.
	local string
}

// jsAPI returns the export of a JetStream API subject ("$JS.API." + rest),
// imported under the gateway's API prefix.
func (s Subjects) jsAPI(rest string) export {
	return export{subject: "$JS.API." + rest, local: s.JSAPIPrefix() + "." + rest}
}

// JSAPIPrefix is the JetStream API prefix identities and operators use
// (jetstream.NewWithAPIPrefix): their account imports the few API
// subjects it may use from the gateway account under this prefix.
func (s Subjects) JSAPIPrefix() string { return s.prefix + ".js" }

// identityExports are what an identity may reach in the gateway account.
func (s Subjects) identityExports(id string) []export {
	deliver, consumer := s.Stream(StreamDeliver), AgentConsumer(id)
	next := s.jsAPI("CONSUMER.MSG.NEXT." + deliver + "." + consumer)
	next.response = "stream"
	return []export{
		{subject: s.SubmitFor(id), threshold: "10s"},
		{subject: s.QueryFor(id), threshold: "10s"},
		next,
		withThreshold(s.jsAPI("CONSUMER.INFO."+deliver+"."+consumer), "10s"),
		{subject: jsAck(deliver, consumer), threshold: "5s"},
		{subject: jsAckDomain(deliver, consumer), threshold: "5s"},
	}
}

// operatorExports are what every operator may reach.
func (s Subjects) operatorExports() []export {
	ledger, dead := s.Stream(StreamLedger), s.Stream(StreamDeadLetter)
	direct := s.jsAPI("DIRECT.GET." + ledger)
	direct.response = "stream"
	direct.threshold = "30s"
	return []export{
		{subject: s.CtlAll(), threshold: "30s"},
		withThreshold(s.jsAPI("STREAM.INFO."+ledger), "10s"),
		// The projector's progress, for projections status.
		withThreshold(s.jsAPI("CONSUMER.INFO."+ledger+"."+ProjectorConsumer), "10s"),
		withThreshold(s.jsAPI("STREAM.MSG.GET."+ledger), "10s"),
		direct,
		withThreshold(s.jsAPI("DIRECT.GET."+ledger+".>"), "10s"),
		{subject: s.AlertAll(), stream: true},
		// The dead letters, read like the ledger (tollgate alerts dead).
		withThreshold(s.jsAPI("STREAM.INFO."+dead), "10s"),
		withThreshold(s.jsAPI("STREAM.MSG.GET."+dead), "10s"),
		withThreshold(s.jsAPI("DIRECT.GET."+dead), "10s"),
	}
}

// AccountsConfig writes the accounts block of a NATS server config for a
// layout: the gateway account with JetStream and its exports, and one
// account per identity and operator with its imports, its nkey user and
// that user's permissions. The embedded server is configured from it; an
// external server includes it (see docs/operations.md).
func (s Subjects) AccountsConfig(l Layout) string { return s.accountsConfig(l, nil) }

// StagedAccountsConfig is AccountsConfig with the accounts named in staged
// left without their imports. nats-server wires the service imports of an
// account only when the account already exists as the config is (re)loaded
// (as of 2.15, an account created by a reload gets no import
// subscriptions), so identities are added in two reloads: staged, then
// whole (see Embedded.SetLayout).
func (s Subjects) StagedAccountsConfig(l Layout, staged map[string]bool) string {
	return s.accountsConfig(l, staged)
}

// AccountNames returns the names of the accounts a layout has.
func (s Subjects) AccountNames(l Layout) map[string]bool {
	names := map[string]bool{s.GatewayAccount(): true}
	for _, id := range l.Identities {
		if !id.Disabled && id.PublicKey != "" {
			names[s.IdentityAccount(id.ID)] = true
		}
	}
	for id := range l.Operators {
		names[s.OperatorAccount(id)] = true
	}
	return names
}

func (s Subjects) accountsConfig(l Layout, staged map[string]bool) string {
	var b strings.Builder
	gw := s.GatewayAccount()
	type grant struct {
		account string
		exports []export
	}
	var grants []grant
	for _, id := range l.Identities {
		if id.Disabled || id.PublicKey == "" {
			continue
		}
		grants = append(grants, grant{s.IdentityAccount(id.ID), s.identityExports(id.ID)})
	}
	ops := make([]string, 0, len(l.Operators))
	for id := range l.Operators {
		ops = append(ops, id)
	}
	sort.Strings(ops)
	var opAccounts []string
	for _, id := range ops {
		opAccounts = append(opAccounts, s.OperatorAccount(id))
	}

	b.WriteString("accounts {\n")
	fmt.Fprintf(&b, "  %s: {\n    jetstream: enabled\n    users: [\n", strconv.Quote(gw))
	for _, k := range l.GatewayKeys {
		fmt.Fprintf(&b, "      {nkey: %s}\n", strconv.Quote(k))
	}
	b.WriteString("    ]\n    exports: [\n")
	for _, g := range grants {
		for _, e := range g.exports {
			writeExport(&b, e, []string{g.account})
		}
	}
	if len(opAccounts) > 0 {
		for _, e := range s.operatorExports() {
			writeExport(&b, e, opAccounts)
		}
	}
	b.WriteString("    ]\n  }\n")

	for _, id := range l.Identities {
		if id.Disabled || id.PublicKey == "" {
			continue
		}
		perms, name := s.IdentityPermissions(id.ID), s.IdentityAccount(id.ID)
		imports := s.identityExports(id.ID)
		if staged[name] {
			imports = nil
		}
		writeAccount(&b, name, gw, id.PublicKey, imports, perms.Publish.Allow, perms.Subscribe.Allow)
	}
	for _, id := range ops {
		perms, name := s.OperatorPermissions(id), s.OperatorAccount(id)
		imports := s.operatorExports()
		if staged[name] {
			imports = nil
		}
		writeAccount(&b, name, gw, l.Operators[id], imports, perms.Publish.Allow, perms.Subscribe.Allow)
	}
	if len(l.SystemKeys) > 0 {
		b.WriteString("  SYS: {\n    users: [\n")
		for _, k := range l.SystemKeys {
			fmt.Fprintf(&b, "      {nkey: %s}\n", strconv.Quote(k))
		}
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	if len(l.SystemKeys) > 0 {
		b.WriteString("system_account: SYS\n")
	}
	return b.String()
}

func writeExport(b *strings.Builder, e export, accounts []string) {
	kind := "service"
	if e.stream {
		kind = "stream"
	}
	fmt.Fprintf(b, "      {%s: %s", kind, strconv.Quote(e.subject))
	if e.response != "" {
		fmt.Fprintf(b, ", response: %s", e.response)
	}
	if e.threshold != "" {
		fmt.Fprintf(b, ", response_threshold: %s", strconv.Quote(e.threshold))
	}
	b.WriteString(", accounts: [")
	for i, a := range accounts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(a))
	}
	b.WriteString("]}\n")
}

func writeAccount(b *strings.Builder, name, gw, key string, imports []export, pub, sub []string) {
	fmt.Fprintf(b, "  %s: {\n    users: [\n      {nkey: %s, permissions: {publish: {allow: %s}, subscribe: {allow: %s}}}\n    ]\n    imports: [\n",
		strconv.Quote(name), strconv.Quote(key), quoteList(pub), quoteList(sub))
	for _, e := range imports {
		kind := "service"
		if e.stream {
			kind = "stream"
		}
		fmt.Fprintf(b, "      {%s: {account: %s, subject: %s}", kind, strconv.Quote(gw), strconv.Quote(e.subject))
		if e.local != "" {
			fmt.Fprintf(b, ", to: %s", strconv.Quote(e.local))
		}
		b.WriteString("}\n")
	}
	b.WriteString("    ]\n  }\n")
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func withThreshold(e export, d string) export {
	e.threshold = d
	return e
}

// importedAs is the subject the importing account publishes to.
func (e export) importedAs() string {
	if e.local != "" {
		return e.local
	}
	return e.subject
}
