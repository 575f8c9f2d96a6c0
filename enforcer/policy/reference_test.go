package policy

import (
	"fmt"
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// decideScan is Decide as it was before the policy index (commit cb11b71):
// the request and its whole context record built per call, validated
// against the schema, and every policy of the set evaluated. It is the
// reference of the differential test and the "scan" path of the
// benchmarks. Its Errors are in the order Cedar met the policies. A tool
// of an MCP server is Tool::"<server>/<tool>" (Identity.ResourceID), as
// in the directory's entities (since 3f31a51): with its bare id, a policy
// naming the tool would never match it here.
func (e *Engine) decideScan(r Request) Decision {
	req := types.Request{
		Principal: types.NewEntityUID(types.EntityType(r.Principal.Type), types.String(r.Principal.ResourceID())),
		Action:    types.NewEntityUID("Action", types.String(r.Action)),
		Resource:  types.NewEntityUID(types.EntityType(r.Resource.Type), types.String(r.Resource.ResourceID())),
		Context:   r.Context.scanRecord(),
	}
	if err := e.set.validator.Request(req); err != nil {
		return Decision{Errors: []string{"request does not match the schema: " + err.Error()}}
	}
	decision, diag := cedar.Authorize(e.set.policies, e.entities, req)
	var d Decision
	for _, de := range diag.Errors {
		d.Errors = append(d.Errors, fmt.Sprintf("%s: %s", de.PolicyID, de.Message))
		d.PolicyIDs = append(d.PolicyIDs, string(de.PolicyID))
	}
	if len(d.Errors) > 0 {
		slices.Sort(d.PolicyIDs)
		return d
	}
	for _, r := range diag.Reasons {
		d.PolicyIDs = append(d.PolicyIDs, string(r.PolicyID))
	}
	slices.Sort(d.PolicyIDs)
	d.Allow = decision == cedar.Allow
	return d
}

// scanRecord is Context.record as it was before the index.
func (c Context) scanRecord() types.Record {
	cost, err := types.NewDecimalFromFloat(c.CostSoFar)
	if err != nil { // beyond decimal's range: saturate, it only grows
		cost, _ = types.NewDecimal(922337203685477, 0)
	}
	var quotaUsed int64
	if c.QuotaUsed != nil {
		quotaUsed = c.QuotaUsed()
	}
	return types.NewRecord(types.RecordMap{
		"run_id":        types.String(c.RunID),
		"workflow":      types.String(c.Workflow),
		"depth":         types.Long(c.Depth),
		"ancestry":      scanStringSet(c.Ancestry),
		"on_behalf_of":  types.String(c.OnBehalfOf),
		"is_cycle":      types.Boolean(c.IsCycle),
		"hops_so_far":   types.Long(c.HopsSoFar),
		"tokens_so_far": types.Long(c.TokensSoFar),
		"cost_so_far":   cost,
		"edge_calls":    types.Long(c.EdgeCalls),
		"tainted":       types.Boolean(c.Tainted),
		"taint_sources": scanStringSet(c.TaintSources),
		"quota_used":    types.Long(quotaUsed),
	})
}

func scanStringSet(ss []string) types.Set {
	vals := make([]types.Value, len(ss))
	for i, s := range ss {
		vals[i] = types.String(s)
	}
	return types.NewSet(vals...)
}
