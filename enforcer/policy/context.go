package policy

import (
	"math/bits"
	"sync"

	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Context is what the gateway knows about a hop; it becomes the Cedar
// context record (see HopContext in the Cedar schema).
type Context struct {
	RunID       string
	Workflow    string
	Depth       int
	Ancestry    []string
	OnBehalfOf  string
	IsCycle     bool
	HopsSoFar   int
	TokensSoFar int64
	CostSoFar   float64
	EdgeCalls   int
	Tainted     bool
	// TaintSources says where the taint came from (docs/guardrails.md).
	TaintSources []string
	// QuotaUsed returns the highest share, in percent, of a spend quota
	// that applies to the hop (settled and reserved, before this hop); nil
	// is 0. It is called only when a policy reads context.quota_used.
	QuotaUsed func() int64
}

// contextReads is a set of the context attributes a policy reads: bit i
// for hopContext[i], and wholeContext when the policy uses the context
// record other than by reading a named attribute of it (`context == …`,
// `context in …`), which needs every attribute.
type contextReads uint16

const wholeContext contextReads = 1 << 15

// The attributes' bits stay below wholeContext.
const _ = uint(15 - len(hopContext))

// allContext reads every attribute.
const allContext = contextReads(1)<<len(hopContext) - 1

// hopContext names the attributes of the context record, in the order of
// the schema's HopContext; Context.attribute builds them. Building a Cedar
// record costs a few hundred nanoseconds per attribute (about a
// microsecond for ancestry), so a decision builds only those its candidate
// policies read.
var hopContext = [...]types.String{
	"run_id", "workflow", "depth", "ancestry", "on_behalf_of", "is_cycle",
	"hops_so_far", "tokens_so_far", "cost_so_far", "edge_calls", "tainted",
	"taint_sources", "quota_used",
}

// attribute is the value of hopContext[i].
func (c *Context) attribute(i int) types.Value {
	switch hopContext[i] {
	case "run_id":
		return types.String(c.RunID)
	case "workflow":
		return types.String(c.Workflow)
	case "depth":
		return types.Long(c.Depth)
	case "ancestry":
		return stringSet(c.Ancestry)
	case "on_behalf_of":
		return types.String(c.OnBehalfOf)
	case "is_cycle":
		return types.Boolean(c.IsCycle)
	case "hops_so_far":
		return types.Long(c.HopsSoFar)
	case "tokens_so_far":
		return types.Long(c.TokensSoFar)
	case "cost_so_far":
		return costDecimal(c.CostSoFar)
	case "edge_calls":
		return types.Long(c.EdgeCalls)
	case "tainted":
		return types.Boolean(c.Tainted)
	case "taint_sources":
		return stringSet(c.TaintSources)
	case "quota_used":
		if c.QuotaUsed == nil {
			return types.Long(0)
		}
		return types.Long(c.QuotaUsed())
	}
	return nil // unreachable: every name of hopContext has its case
}

// contextAttr is the bit of a context attribute, 0 for a name the record
// does not have (reading it fails the same with or without the others).
func contextAttr(name types.String) contextReads {
	for i, a := range hopContext {
		if a == name {
			return 1 << i
		}
	}
	return 0
}

// readsOf finds the context attributes a policy's conditions read. Only
// `context.name` and `context has name` read a single attribute; any
// other use of the context variable reads the whole record.
func readsOf(p *cedarast.Policy) contextReads {
	var reads contextReads
	for _, c := range p.Conditions {
		cedarast.Inspect(cedarast.NewNode(c.Body), func(n cedarast.IsNode) bool {
			switch n := n.(type) {
			case cedarast.NodeTypeAccess:
				if isContext(n.Arg) {
					reads |= contextAttr(n.Value)
					return false
				}
			case cedarast.NodeTypeHas:
				if isContext(n.Arg) {
					reads |= contextAttr(n.Value)
					return false
				}
			case cedarast.NodeTypeVariable:
				if n.Name == "context" {
					reads |= wholeContext
				}
			}
			return true
		})
	}
	return reads
}

func isContext(n cedarast.IsNode) bool {
	v, ok := n.(cedarast.NodeTypeVariable)
	return ok && v.Name == "context"
}

// record is the whole context record, as the schema declares it.
func (c *Context) record() types.Record { return c.recordOf(allContext) }

// smallRecord is the most attributes a map holds in a single group: such
// a map stays small when cleared, and copying it (NewRecord does) is cheap.
const smallRecord = 8

// smallMaps recycles the small maps records are built from.
var smallMaps = sync.Pool{New: func() any { return types.RecordMap{} }}

// recordOf builds the record with the attributes in reads only (all of
// them with wholeContext), the empty record when reads is empty.
func (c *Context) recordOf(reads contextReads) types.Record {
	if reads&wholeContext != 0 {
		reads = allContext
	}
	if reads == 0 {
		return types.Record{}
	}
	small := bits.OnesCount16(uint16(reads)) <= smallRecord
	var m types.RecordMap
	if small {
		m = smallMaps.Get().(types.RecordMap)
	} else {
		m = make(types.RecordMap, len(hopContext))
	}
	for i, name := range hopContext {
		if reads&(1<<i) != 0 {
			m[name] = c.attribute(i)
		}
	}
	rec := types.NewRecord(m) // copies m
	if small {
		clear(m)
		smallMaps.Put(m)
	}
	return rec
}

// costDecimal converts the run's cost to a Cedar decimal, saturating
// beyond decimal's range: it only grows.
func costDecimal(f float64) types.Decimal {
	cost, err := types.NewDecimalFromFloat(f)
	if err != nil {
		cost, _ = types.NewDecimal(922337203685477, 0)
	}
	return cost
}

func stringSet(ss []string) types.Set {
	var buf [8]types.Value
	vals := buf[:0]
	for _, s := range ss {
		vals = append(vals, types.String(s))
	}
	return types.NewSet(vals...)
}
