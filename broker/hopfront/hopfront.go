// Package hopfront holds what the HTTP fronts of model and tool hops share:
// how they learn who calls (an authenticated identity) and which task the
// call serves (the parent hop header), and the submission they hand to the
// gateway's ingress, which submits the hop on the caller's behalf and
// waits for its outcome.
package hopfront

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// ParentHopHeader names the hop the calling agent is serving: a model or
// tool hop is a delegation of that task, so the gateway derives its run,
// depth, ancestry, budget and taint from it.
const ParentHopHeader = "X-Tollgate-Parent-Hop"

// RunHeader names the run of the parent hop (the delivery's run_id): it
// routes the submission to the enforcer instance that owns the run.
const RunHeader = "X-Tollgate-Run"

// ErrParentHop means a request names no usable parent hop.
var ErrParentHop = errors.New("hopfront: parent hop")

// ParentHop reads and checks the parent hop and run headers.
func ParentHop(h http.Header) (hop, run string, err error) {
	hop, run = h.Get(ParentHopHeader), h.Get(RunHeader)
	switch {
	case hop == "":
		return "", "", fmt.Errorf("%w: the %s header is missing: a model or tool call is made from inside a task, naming its hop", ErrParentHop, ParentHopHeader)
	case !schemas.ValidID(hop):
		return "", "", fmt.Errorf("%w: %s %q is not a hop id", ErrParentHop, ParentHopHeader, hop)
	case run == "":
		return "", "", fmt.Errorf("%w: the %s header is missing: name the run of the parent hop", ErrParentHop, RunHeader)
	case !schemas.ValidID(run):
		return "", "", fmt.Errorf("%w: %s %q is not a run id", ErrParentHop, RunHeader, run)
	}
	return hop, run, nil
}

// Authenticate returns the identity an HTTP request's credential is bound
// to (broker/bearer's Authenticator), or an error saying why not.
type Authenticate func(r *http.Request) (*broker.Identity, error)

// Submission is a hop a front submits on behalf of its caller.
type Submission struct {
	// Caller is the authenticated identity; the hop is its delegation.
	Caller *broker.Identity
	// ParentHop is the hop the caller serves, RunID its run.
	ParentHop, RunID string
	// To is the model or tool identity.
	To string
	// Message is the hop's A2A message.
	Message *a2a.Message
	// Estimate is reserved against the run's budget at admission.
	Estimate *schemas.Usage
	// Key names the hop within its parent (empty: a fresh one per call).
	Key string
}

// Submit submits a hop and waits for its outcome: the reply, or an
// *agent.DeniedError, agent.ErrTimedOut or another error.
type Submit func(ctx context.Context, s Submission) (*agent.Reply, error)

// Deny writes a JSON error the way OpenAI-compatible clients read it.
func Deny(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"type": code, "code": code, "message": message}})
}
