package decision

import (
	"fmt"

	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// Verdict is a denial: a reason code, an explanation, the policies that
// decided when Cedar did, and the limit when one tripped. A nil *Verdict
// allows.
type Verdict struct {
	Reason    schemas.Reason
	Message   string
	PolicyIDs []string
	Breach    *schemas.Breach
}

// Deny returns a denial for reason.
func Deny(reason schemas.Reason, format string, args ...any) *Verdict {
	return &Verdict{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Breached returns a denial that trips limit: value went past bound.
func Breached(reason schemas.Reason, limit string, value, bound float64, format string, args ...any) *Verdict {
	v := Deny(reason, format, args...)
	v.Breach = &schemas.Breach{Limit: limit, Value: value, Bound: bound}
	return v
}

// Limit is the limit the verdict tripped, "" when none did.
func (v *Verdict) Limit() string {
	if v == nil || v.Breach == nil {
		return ""
	}
	return v.Breach.Limit
}

// finding is the verdict as audit mode records it.
func (v *Verdict) finding() schemas.Finding {
	return schemas.Finding{Reason: v.Reason, Message: v.Message, PolicyIDs: v.PolicyIDs}
}

// PolicyVerdict explains a Cedar decision the way the enforcer records it:
// nil for an allow, else a policy denial naming the deciding policies.
func PolicyVerdict(d policy.Decision, r policy.Request) *Verdict {
	switch {
	case len(d.Errors) > 0:
		return &Verdict{Reason: schemas.ReasonPolicy, Message: "policy evaluation failed, which denies: " + d.Errors[0], PolicyIDs: d.PolicyIDs}
	case !d.Allow && len(d.PolicyIDs) > 0:
		return &Verdict{Reason: schemas.ReasonPolicy, Message: fmt.Sprintf("forbidden by policy %v", d.PolicyIDs), PolicyIDs: d.PolicyIDs}
	case !d.Allow:
		return Deny(schemas.ReasonPolicy, "no policy permits %s %s %s (default deny)", r.Principal.ID, r.Action, r.Resource.ID)
	}
	return nil
}
