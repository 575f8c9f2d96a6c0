package policy

import (
	"math"
	"slices"

	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Guards: a policy's conditions decided in Go, before Cedar, when that is
// cheap and certain.
//
// Cedar evaluates a policy as scope && c1 && c2 && … (an unless clause
// as !c), left to right and short-circuiting, and a scope test never
// fails. So when c1 … ck-1 evaluate to true and ck to false, all without
// an error, the policy is false without an error whatever its scope, and
// leaving it out of the candidates changes neither the decision, nor the
// deciding policies, nor the errors (as with the index, index.go). And
// when every clause evaluates to true without an error, the policy is its
// scope: Cedar evaluates the policy without its conditions (same id,
// effect and position), which needs no context attribute.
//
// A guard evaluates a condition as Cedar does, over a subset of the
// language: literals, context attributes (all but quota_used, which costs
// a call), attributes of the principal and the resource, has, ==, !=, <,
// <=, >, >=, +, -, *, unary -, !, &&, ||, if-then-else, like, contains and
// the decimal comparisons. Anything else, and anything Cedar would fail
// on (a missing attribute, a type error, an overflow), is unknown, and an
// unknown clause keeps the policy: Cedar evaluates it, and reports the
// error if there is one. A guard never yields an error of its own.

// vkind is the type of a value a guard computed.
type vkind uint8

const (
	vUnknown vkind = iota // not computed: unsupported, or Cedar would fail
	vBool                 // n is 0 or 1
	vLong                 // n
	vString               // s
	vDecimal              // d
	vStrings              // a set of strings of the context, not built as a Cedar set: ancestry (n 0) or taint_sources (n 1)
	vValue                // v: any other Cedar value
)

// val is a value as Cedar would compute it, when kind is not vUnknown
// (the zero val is unknown). A boolean, long, string or decimal always has
// its own kind, never vValue, so two vals of different kinds are different
// Cedar values (vStrings aside).
type val struct {
	kind vkind
	n    int64
	s    string
	d    types.Decimal
	// v is the boxed value: always set for vValue, set for literals and
	// entity attributes of the other kinds (contains needs it boxed).
	v types.Value
}

func boolVal(b bool) val {
	if b {
		return val{kind: vBool, n: 1}
	}
	return val{kind: vBool}
}

// valOf is a Cedar value as a val (keeping it boxed, not boxing it
// again).
func valOf(v types.Value) val {
	switch x := v.(type) {
	case types.Boolean:
		if x {
			return val{kind: vBool, n: 1, v: v}
		}
		return val{kind: vBool, v: v}
	case types.Long:
		return val{kind: vLong, n: int64(x), v: v}
	case types.String:
		return val{kind: vString, s: string(x), v: v}
	case types.Decimal:
		return val{kind: vDecimal, d: x, v: v}
	case nil:
		return val{}
	}
	return val{kind: vValue, v: v}
}

// boxed is v as a Cedar value; vStrings is never boxed.
func (v val) boxed() (types.Value, bool) {
	if v.v != nil {
		return v.v, true
	}
	switch v.kind {
	case vBool:
		return types.Boolean(v.n != 0), true
	case vLong:
		return types.Long(v.n), true
	case vString:
		return types.String(v.s), true
	case vDecimal:
		return v.d, true
	}
	return nil, false
}

// facts is what a guard reads: the hop's context and the request's
// principal and resource. It holds a copy of the context, so that the
// caller's does not escape to the heap through the guards' calls.
type facts struct {
	ctx  Context
	p, r *subject
}

// expr computes a value, unknown when it cannot.
type expr func(*facts) val

// clause is one when or unless clause of a policy.
type clause struct {
	unless bool
	body   expr
}

// guard holds the leading clauses of a policy that a guard can evaluate:
// up to the first whose body it cannot compute at all (none: no guard).
// whole is set when that is every clause.
type guard struct {
	clauses []clause
	whole   bool
}

// ok reports whether there is a guard.
func (g *guard) ok() bool { return g.clauses != nil }

// verdict is what a guard concludes for a request.
type verdict uint8

const (
	// keep: the policy is evaluated whole by Cedar.
	keep verdict = iota
	// exclude: the policy is false without an error; Cedar need not
	// evaluate it.
	exclude
	// scopeOnly: every condition is true without an error, so the policy
	// is its scope; Cedar evaluates the scope alone.
	scopeOnly
)

// verdict evaluates the clauses for the request of f.
func (g *guard) verdict(f *facts) verdict {
	for _, c := range g.clauses {
		v := c.body(f)
		if v.kind != vBool {
			return keep
		}
		if (v.n != 0) == c.unless {
			return exclude
		}
	}
	if g.whole {
		return scopeOnly
	}
	return keep
}

// guardCompiler compiles the guards of a policy set. It numbers the
// attributes of the principal and resource the guards read, which every
// subject holds ready (subject.attrs) instead of looking them up in its
// entity's record.
type guardCompiler struct {
	attrs []types.String
}

// slot is the number of an entity attribute.
func (gc *guardCompiler) slot(name types.String) int {
	if i := slices.Index(gc.attrs, name); i >= 0 {
		return i
	}
	gc.attrs = append(gc.attrs, name)
	return len(gc.attrs) - 1
}

// guard compiles the conditions of a policy; no clauses when it has none,
// or its first clause cannot be computed for any request.
func (gc *guardCompiler) guard(p *cedarast.Policy) guard {
	g := guard{whole: true}
	for _, c := range p.Conditions {
		body := gc.expr(c.Body)
		if body == nil {
			g.whole = false
			break
		}
		g.clauses = append(g.clauses, clause{unless: c.Condition == cedarast.ConditionUnless, body: body})
	}
	if len(g.clauses) == 0 {
		return guard{}
	}
	return g
}

// entityAttrs are the values of the attributes numbered attrs of an
// entity: unknown for one it does not have, all unknown when it is not
// an entity (reading its attributes is an error).
func entityAttrs(e types.Entity, known bool, attrs []types.String) []val {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]val, len(attrs))
	if !known {
		return out
	}
	for i, name := range attrs {
		if v, ok := e.Attributes.Get(name); ok {
			out[i] = valOf(v)
		}
	}
	return out
}

// op is an operator on two values.
type op uint8

const (
	opEqual op = iota
	opNotEqual
	opLess
	opLessEqual
	opGreater
	opGreaterEqual
	opAdd
	opSub
	opMul
	opContains
	opDecimalLess
	opDecimalLessEqual
	opDecimalGreater
	opDecimalGreaterEqual
)

// apply is a op b, both known, as Cedar computes it; unknown where Cedar
// fails (a type error, an overflow) or the guard leaves it to Cedar.
func apply(f *facts, o op, a, b *val) val {
	switch o {
	case opEqual, opNotEqual:
		return equal(a, b, o == opNotEqual)
	case opContains:
		return contains(f, a, b)
	case opDecimalLess, opDecimalLessEqual, opDecimalGreater, opDecimalGreaterEqual:
		if a.kind != vDecimal || b.kind != vDecimal {
			return val{}
		}
		c := a.d.Compare(b.d)
		switch o {
		case opDecimalLess:
			return boolVal(c < 0)
		case opDecimalLessEqual:
			return boolVal(c <= 0)
		case opDecimalGreater:
			return boolVal(c > 0)
		}
		return boolVal(c >= 0)
	}
	// On longs only: anything else is an error, or a comparison of
	// datetimes or durations, left to Cedar.
	if a.kind != vLong || b.kind != vLong {
		return val{}
	}
	x, y := a.n, b.n
	switch o {
	case opLess:
		return boolVal(x < y)
	case opLessEqual:
		return boolVal(x <= y)
	case opGreater:
		return boolVal(x > y)
	case opGreaterEqual:
		return boolVal(x >= y)
	case opAdd: // overflow checks as Cedar's
		if r := x + y; (r > x) == (y > 0) {
			return val{kind: vLong, n: r}
		}
	case opSub:
		if r := x - y; (r > x) == (y < 0) {
			return val{kind: vLong, n: r}
		}
	case opMul:
		if x == 0 || y == 0 {
			return val{kind: vLong}
		}
		if r := x * y; (r < 0) == ((x < 0) != (y < 0)) && r/x == y {
			return val{kind: vLong, n: r}
		}
	}
	return val{}
}

// equal is == (!= when not): Cedar values of different types are never
// equal.
func equal(a, b *val, not bool) val {
	var eq bool
	switch {
	case a.kind == vStrings || b.kind == vStrings:
		return val{} // comparing sets: left to Cedar
	case a.kind != b.kind:
		eq = false
	case a.kind == vBool || a.kind == vLong:
		eq = a.n == b.n
	case a.kind == vString:
		eq = a.s == b.s
	case a.kind == vDecimal:
		eq = a.d.Compare(b.d) == 0
	default:
		eq = a.v.Equal(b.v)
	}
	return boolVal(eq != not)
}

// contains is set.contains(x): the left operand must be a set.
func contains(f *facts, set, x *val) val {
	switch {
	case set.kind == vStrings:
		ss := f.ctx.Ancestry
		if set.n == 1 {
			ss = f.ctx.TaintSources
		}
		return boolVal(x.kind == vString && slices.Contains(ss, x.s))
	case set.kind != vValue:
		return val{}
	}
	s, ok := set.v.(types.Set)
	if !ok {
		return val{}
	}
	xv, ok := x.boxed()
	if !ok {
		return val{}
	}
	return boolVal(s.Contains(xv))
}

// expr compiles a condition node; nil when no request would make it
// computable.
func (gc *guardCompiler) expr(n cedarast.IsNode) expr {
	switch n := n.(type) {
	case cedarast.NodeValue:
		if v, ok := constant(n); ok {
			return func(*facts) val { return v }
		}
		return nil
	case cedarast.NodeTypeAccess:
		return gc.access(n)
	case cedarast.NodeTypeHas:
		return gc.has(n)
	case cedarast.NodeTypeNot:
		arg := gc.expr(n.Arg)
		if arg == nil {
			return nil
		}
		return func(f *facts) val {
			if v := arg(f); v.kind == vBool {
				return boolVal(v.n == 0)
			}
			return val{}
		}
	case cedarast.NodeTypeAnd:
		return gc.andOr(n.Left, n.Right, false)
	case cedarast.NodeTypeOr:
		return gc.andOr(n.Left, n.Right, true)
	case cedarast.NodeTypeIfThenElse:
		cond, then, els := gc.expr(n.If), gc.expr(n.Then), gc.expr(n.Else)
		if cond == nil || then == nil && els == nil {
			return nil
		}
		return func(f *facts) val {
			c := cond(f)
			switch {
			case c.kind != vBool:
				return val{}
			case c.n != 0 && then != nil:
				return then(f)
			case c.n == 0 && els != nil:
				return els(f)
			}
			return val{}
		}
	case cedarast.NodeTypeEquals:
		return gc.binary(opEqual, n.Left, n.Right)
	case cedarast.NodeTypeNotEquals:
		return gc.binary(opNotEqual, n.Left, n.Right)
	case cedarast.NodeTypeLessThan:
		return gc.binary(opLess, n.Left, n.Right)
	case cedarast.NodeTypeLessThanOrEqual:
		return gc.binary(opLessEqual, n.Left, n.Right)
	case cedarast.NodeTypeGreaterThan:
		return gc.binary(opGreater, n.Left, n.Right)
	case cedarast.NodeTypeGreaterThanOrEqual:
		return gc.binary(opGreaterEqual, n.Left, n.Right)
	case cedarast.NodeTypeAdd:
		return gc.binary(opAdd, n.Left, n.Right)
	case cedarast.NodeTypeSub:
		return gc.binary(opSub, n.Left, n.Right)
	case cedarast.NodeTypeMult:
		return gc.binary(opMul, n.Left, n.Right)
	case cedarast.NodeTypeContains:
		return gc.binary(opContains, n.Left, n.Right)
	case cedarast.NodeTypeNegate:
		arg := gc.expr(n.Arg)
		if arg == nil {
			return nil
		}
		return func(f *facts) val {
			if v := arg(f); v.kind == vLong && v.n != math.MinInt64 {
				return val{kind: vLong, n: -v.n}
			}
			return val{}
		}
	case cedarast.NodeTypeLike:
		arg, pattern := gc.expr(n.Arg), n.Value
		if arg == nil {
			return nil
		}
		return func(f *facts) val {
			if v := arg(f); v.kind == vString {
				return boolVal(pattern.Match(types.String(v.s)))
			}
			return val{}
		}
	case cedarast.NodeTypeExtensionCall:
		return gc.extension(n)
	}
	return nil
}

// andOr is && (or false) and || (or true): the left operand must be a
// boolean; when it is `or` the right one is not evaluated, otherwise it
// is the result, and must be a boolean too.
func (gc *guardCompiler) andOr(left, right cedarast.IsNode, or bool) expr {
	l, r := gc.expr(left), gc.expr(right)
	if l == nil {
		return nil
	}
	return func(f *facts) val {
		a := l(f)
		if a.kind != vBool {
			return val{}
		}
		if (a.n != 0) == or {
			return a
		}
		if r == nil {
			return val{}
		}
		if b := r(f); b.kind == vBool {
			return b
		}
		return val{}
	}
}

// binary evaluates both operands, left first, and applies o. A constant
// right operand is computed once.
func (gc *guardCompiler) binary(o op, left, right cedarast.IsNode) expr {
	l := gc.expr(left)
	if l == nil {
		return nil
	}
	if b, ok := constant(right); ok {
		return func(f *facts) val {
			a := l(f)
			if a.kind == vUnknown {
				return val{}
			}
			return apply(f, o, &a, &b)
		}
	}
	r := gc.expr(right)
	if r == nil {
		return nil
	}
	return func(f *facts) val {
		a := l(f)
		if a.kind == vUnknown {
			return val{}
		}
		b := r(f)
		if b.kind == vUnknown {
			return val{}
		}
		return apply(f, o, &a, &b)
	}
}

// constant is the value of a literal, or of decimal("…") of a literal
// string that parses.
func constant(n cedarast.IsNode) (val, bool) {
	switch n := n.(type) {
	case cedarast.NodeValue:
		v := valOf(n.Value)
		return v, v.kind != vUnknown
	case cedarast.NodeTypeExtensionCall:
		if n.Name != "decimal" || len(n.Args) != 1 {
			return val{}, false
		}
		lit, ok := n.Args[0].(cedarast.NodeValue)
		if !ok {
			return val{}, false
		}
		s, ok := lit.Value.(types.String)
		if !ok {
			return val{}, false
		}
		d, err := types.ParseDecimal(string(s))
		if err != nil {
			return val{}, false
		}
		return valOf(d), true
	}
	return val{}, false
}

// extension handles decimal("…") of a literal and the decimal
// comparisons.
func (gc *guardCompiler) extension(n cedarast.NodeTypeExtensionCall) expr {
	var o op
	switch n.Name {
	case "decimal":
		if v, ok := constant(n); ok {
			return func(*facts) val { return v }
		}
		return nil
	case "lessThan":
		o = opDecimalLess
	case "lessThanOrEqual":
		o = opDecimalLessEqual
	case "greaterThan":
		o = opDecimalGreater
	case "greaterThanOrEqual":
		o = opDecimalGreaterEqual
	default:
		return nil
	}
	if len(n.Args) != 2 {
		return nil
	}
	return gc.binary(o, n.Args[0], n.Args[1])
}

// variable names the variable n is, "" when it is not one.
func variable(n cedarast.IsNode) types.String {
	if v, ok := n.(cedarast.NodeTypeVariable); ok {
		return v.Name
	}
	return ""
}

// access handles context.name and principal.name, resource.name: an
// entity attribute is unknown when the subject is not an entity or has no
// such attribute (both errors).
func (gc *guardCompiler) access(n cedarast.NodeTypeAccess) expr {
	switch variable(n.Arg) {
	case "context":
		return contextAttribute(n.Value)
	case "principal":
		i := gc.slot(n.Value)
		return func(f *facts) val { return f.p.attrs[i] }
	case "resource":
		i := gc.slot(n.Value)
		return func(f *facts) val { return f.r.attrs[i] }
	}
	return nil
}

// has handles context has name and principal has name, resource has
// name: false, not an error, for an entity that does not exist.
func (gc *guardCompiler) has(n cedarast.NodeTypeHas) expr {
	switch variable(n.Arg) {
	case "context":
		v := boolVal(contextAttr(n.Value) != 0)
		return func(*facts) val { return v }
	case "principal":
		i := gc.slot(n.Value)
		return func(f *facts) val { return boolVal(f.p.attrs[i].kind != vUnknown) }
	case "resource":
		i := gc.slot(n.Value)
		return func(f *facts) val { return boolVal(f.r.attrs[i].kind != vUnknown) }
	}
	return nil
}

// contextAttribute is context.name, with the value Context.attribute
// gives it; nil for a name the record does not have (an error) and for
// quota_used (computing it costs a call).
func contextAttribute(name types.String) expr {
	switch name {
	case "run_id":
		return func(f *facts) val { return val{kind: vString, s: f.ctx.RunID} }
	case "workflow":
		return func(f *facts) val { return val{kind: vString, s: f.ctx.Workflow} }
	case "on_behalf_of":
		return func(f *facts) val { return val{kind: vString, s: f.ctx.OnBehalfOf} }
	case "depth":
		return func(f *facts) val { return val{kind: vLong, n: int64(f.ctx.Depth)} }
	case "hops_so_far":
		return func(f *facts) val { return val{kind: vLong, n: int64(f.ctx.HopsSoFar)} }
	case "tokens_so_far":
		return func(f *facts) val { return val{kind: vLong, n: f.ctx.TokensSoFar} }
	case "edge_calls":
		return func(f *facts) val { return val{kind: vLong, n: int64(f.ctx.EdgeCalls)} }
	case "is_cycle":
		return func(f *facts) val { return boolVal(f.ctx.IsCycle) }
	case "tainted":
		return func(f *facts) val { return boolVal(f.ctx.Tainted) }
	case "cost_so_far":
		return func(f *facts) val { return val{kind: vDecimal, d: costDecimal(f.ctx.CostSoFar)} }
	case "ancestry":
		return func(*facts) val { return val{kind: vStrings} }
	case "taint_sources":
		return func(*facts) val { return val{kind: vStrings, n: 1} }
	}
	return nil
}
