package schemas

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Identifier rules. Agent, user, tool and model ids become NATS subject tokens,
// consumer names and inbox prefixes, so they are lower-case and short. Run and
// hop ids become subject tokens too; generated ones are ULIDs, but any token
// that matches IDPattern is accepted so that clients in other languages can
// bring their own. (The checks below are the patterns written out: they run
// on every submission.)

// PrincipalIDPattern is the pattern every agent, user, tool and model id matches.
const PrincipalIDPattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

// IDPattern is the pattern every run and hop id matches.
const IDPattern = `^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$`

// ValidPrincipalID reports whether id can name an agent, user, tool or model
// (PrincipalIDPattern).
func ValidPrincipalID(id string) bool {
	if len(id) == 0 || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		lowerOrDigit := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !lowerOrDigit && (i == 0 || c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// ValidID reports whether id can name a run or a hop (IDPattern).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// CheckPrincipalID returns an error naming what is wrong with id, or nil.
func CheckPrincipalID(id string) error {
	if !ValidPrincipalID(id) {
		return fmt.Errorf("%q is not a valid id (want %s)", id, PrincipalIDPattern)
	}
	return nil
}

// NewID returns a fresh ULID: 26 characters, sortable by creation time.
func NewID() string {
	return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String()
}

// hopIDEncoding writes derived hop ids: 26 characters of A-Z and 2-7.
var hopIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// DeriveHopID is the id of the invoke with key made from scope: the parent
// hop for a delegation, RunScope(run) for a run's root hop. It is the first
// 128 bits of SHA-256("tollgate.hop.v1\n" + scope + "\n" + key) in
// unpadded base32. Deriving hop ids makes them unique across every run
// (scopes are unique), and makes a re-run of a task after a crash name the
// same hops as the first run, which the gateway answers from the ledger.
func DeriveHopID(scope, key string) string {
	if key == "" {
		key = "0"
	}
	sum := sha256.Sum256([]byte("tollgate.hop.v1\n" + scope + "\n" + key))
	return hopIDEncoding.EncodeToString(sum[:16])
}

// RunScope is the scope of a run's root hop.
func RunScope(run string) string { return "run:" + run }

// DerivedHopID is the hop id an invoke must carry: DeriveHopID of its
// parent hop (or its run, for a root invoke) and its hop key.
func (e *Envelope) DerivedHopID() string {
	scope := e.ParentHopID
	if scope == "" {
		scope = RunScope(e.RunID)
	}
	return DeriveHopID(scope, e.HopKey)
}

// Digest is the hex SHA-256 of b: how the ledger names a submission, and
// the only Nats-Msg-Id a submission may carry. An id that is the digest of
// the very bytes it names cannot be chosen ahead of time for someone
// else's message, so one identity's id can never shadow another's.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ToolNamePattern is the pattern the name of a tool on an MCP server
// matches to be governed (the MCP specification's tool name characters).
const ToolNamePattern = `^[A-Za-z0-9_.-]{1,128}$`

// ValidToolName reports whether name can name a tool on an MCP server
// (ToolNamePattern).
func ValidToolName(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ToolResource is the Cedar entity id of a tool an MCP server serves:
// "<server>/<tool>", as in Tool::"web/fetch". It is not a principal id
// (ids cannot hold a "/"): the tool's identity keeps its own id for its
// subjects and credential, and policies name the tool by this.
func ToolResource(server, tool string) string { return server + "/" + tool }

// CheckToolResource returns an error naming what is wrong with a tool
// resource id ("<server>/<tool>": a principal id, a slash, a tool name),
// or nil.
func CheckToolResource(r string) error {
	server, tool, ok := strings.Cut(r, "/")
	if !ok || !ValidPrincipalID(server) || !ValidToolName(tool) {
		return fmt.Errorf("%q is not a valid tool resource (want <server>/<tool>: a server id matching %s, a tool name matching %s)", r, PrincipalIDPattern, ToolNamePattern)
	}
	return nil
}
