package guardrail

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Config is what the guardrail engine enforces: an action per rule, per
// agent and per direction, and the bounds of one scan. The zero Config is
// valid: every rule takes its default action (Rule.Default) for every
// agent, the external checker is off.
type Config struct {
	// Default is the policy of every agent, and what an agent's own
	// policy falls back to for whatever it leaves unset.
	Default AgentPolicy `yaml:"default" json:"default"`
	// Agents are per-agent policies, by identity id.
	Agents map[string]AgentPolicy `yaml:"agents" json:"agents,omitempty"`
	// Limits bound the work of one scan.
	Limits Limits `yaml:"limits" json:"limits"`
}

// AgentPolicy is the guardrail policy of one agent: for the messages it
// receives (Inbound: invokes addressed to it) and for those it sends
// (Outbound: its replies).
type AgentPolicy struct {
	Inbound  Actions `yaml:"inbound" json:"inbound"`
	Outbound Actions `yaml:"outbound" json:"outbound"`
	// Hook says whether the external checker is called for this agent's
	// messages and what a failure does. Empty inherits from Default, whose
	// empty value is off.
	Hook HookMode `yaml:"hook" json:"hook,omitempty"`
}

// Actions chooses the action of each rule in one direction. The most
// specific entry wins: a rule id, then its pack, then Default; an agent's
// own entries (any of the three) win over the gateway default's, and when
// neither names anything the rule's own default applies (Rule.Default).
//
// Default covers the content packs only: the scanner pack's rules
// (truncated, malformed) change only when named, by id or pack. Findings
// of the external checker take the action the checker gave them unless
// their rule id ("external/<id>") or the "external" pack is named;
// external/unavailable takes its action from the agent's hook mode.
type Actions struct {
	// Default applies to every rule not named below.
	Default Action `yaml:"default" json:"default,omitempty"`
	// Packs maps a pack name to an action for all its rules.
	Packs map[string]Action `yaml:"packs" json:"packs,omitempty"`
	// Rules maps a rule id ("pack/rule") to an action.
	Rules map[string]Action `yaml:"rules" json:"rules,omitempty"`
}

// Limits bound the work of one scan, so that no message can make the
// scanner slow. A message that exceeds one is scanned as far as the bound
// allows and reported with the finding scanner/truncated (block unless
// configured otherwise): what was not scanned is not let through as
// clean. Zero means the default.
type Limits struct {
	// MaxBytes: a message larger than this is not parsed at all. Default
	// 4 MiB.
	MaxBytes int `yaml:"max_bytes" json:"max_bytes,omitempty"`
	// MaxTextBytes bounds the text scanned: every string of the message,
	// keys included, plus what decoding produces. Default 1 MiB.
	MaxTextBytes int `yaml:"max_text_bytes" json:"max_text_bytes,omitempty"`
	// MaxDepth bounds the JSON nesting that is walked. Default 32.
	MaxDepth int `yaml:"max_depth" json:"max_depth,omitempty"`
	// MaxDecodeDepth bounds layers within layers (base64 inside an HTML
	// comment is two). Default 2.
	MaxDecodeDepth int `yaml:"max_decode_depth" json:"max_decode_depth,omitempty"`
	// MaxDecodedBytes bounds the bytes decoding may produce. Default
	// 256 KiB.
	MaxDecodedBytes int `yaml:"max_decoded_bytes" json:"max_decoded_bytes,omitempty"`
	// MaxPatternBytes bounds the work of the patterns: the bytes they are
	// run over in one message, every window and anchored attempt counted.
	// Ordinary text needs a few times its length; a message stuffed with
	// keywords to make the scanner slow runs out and is truncated.
	// Default 16 MiB.
	MaxPatternBytes int `yaml:"max_pattern_bytes" json:"max_pattern_bytes,omitempty"`
	// MaxFindings bounds the findings listed; the verdict still counts
	// those beyond it. Default 64.
	MaxFindings int `yaml:"max_findings" json:"max_findings,omitempty"`
	// ExcerptBytes bounds each finding's excerpt. Default 80.
	ExcerptBytes int `yaml:"excerpt_bytes" json:"excerpt_bytes,omitempty"`
}

// SetDefaults gives every limit left zero its default.
func (l *Limits) SetDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxBytes, 4<<20)
	def(&l.MaxTextBytes, 1<<20)
	def(&l.MaxDepth, 32)
	def(&l.MaxDecodeDepth, 2)
	def(&l.MaxDecodedBytes, 256<<10)
	def(&l.MaxPatternBytes, 16<<20)
	def(&l.MaxFindings, 64)
	def(&l.ExcerptBytes, 80)
}

// SetDefaults fills in the defaults of the limits.
func (c *Config) SetDefaults() {
	c.Limits.SetDefaults()
}

// Validate reports every problem of the configuration at once: unknown
// packs, rule ids or actions, bad hook modes, negative limits. The errors
// wrap ErrConfig.
func (c *Config) Validate() error {
	ids, packs := catalogue()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	checkActions := func(where string, a Actions) {
		if a.Default != "" && !a.Default.valid() {
			bad("%s: default action %q is not off, flag, redact or block", where, a.Default)
		}
		for _, p := range sortedKeys(a.Packs) {
			if !packs[p] {
				bad("%s: unknown pack %q (known: %s)", where, p, strings.Join(sortedKeys(packs), ", "))
			}
			if !a.Packs[p].valid() {
				bad("%s: pack %q: action %q is not off, flag, redact or block", where, p, a.Packs[p])
			}
		}
		for _, id := range sortedKeys(a.Rules) {
			switch {
			case id == RuleExternalFailed:
				bad("%s: rule %q takes its action from the hook mode (fail-open or fail-closed)", where, id)
			case !ids[id] && !strings.HasPrefix(id, PackExternal+"/"):
				bad("%s: unknown rule %q", where, id)
			}
			if !a.Rules[id].valid() {
				bad("%s: rule %q: action %q is not off, flag, redact or block", where, id, a.Rules[id])
			}
		}
	}
	checkPolicy := func(where string, p AgentPolicy) {
		checkActions(where+".inbound", p.Inbound)
		checkActions(where+".outbound", p.Outbound)
		if p.Hook != "" && !p.Hook.valid() {
			bad("%s: hook %q is not off, fail-open or fail-closed", where, p.Hook)
		}
	}
	checkPolicy("default", c.Default)
	for _, id := range sortedKeys(c.Agents) {
		if id == "" {
			bad("agents: empty agent id")
		}
		checkPolicy("agents."+id, c.Agents[id])
	}
	l := c.Limits
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max_bytes", l.MaxBytes}, {"max_text_bytes", l.MaxTextBytes}, {"max_depth", l.MaxDepth},
		{"max_decode_depth", l.MaxDecodeDepth}, {"max_decoded_bytes", l.MaxDecodedBytes},
		{"max_pattern_bytes", l.MaxPatternBytes},
		{"max_findings", l.MaxFindings}, {"excerpt_bytes", l.ExcerptBytes},
	} {
		if f.v < 0 {
			bad("limits.%s is negative (%d)", f.name, f.v)
		}
	}
	return errors.Join(errs...)
}

// catalogue lists the rule ids and packs shipped, without compiling them.
func catalogue() (ids, packs map[string]bool) {
	ids, packs = map[string]bool{}, map[string]bool{}
	for _, pk := range shippedPacks() {
		packs[pk.name] = true
		for _, d := range pk.rules {
			ids[pk.name+"/"+d.name] = true
		}
		for _, s := range pk.signals {
			ids[s.ID] = true
		}
	}
	return ids, packs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// policy is an agent's resolved policy: an action per rule index in each
// direction, and the hook mode.
type policy struct {
	in, out table
	hook    HookMode
}

type table struct {
	actions []Action
	// external resolution: what the config says for the external pack.
	extRules []map[string]Action // agent's, then default's
	extPacks []Action
}

// resolve builds the action table of one direction: own (the agent's
// actions, or nil) over def (the gateway default).
func resolve(rules []*rule, own *Actions, def Actions) table {
	t := table{actions: make([]Action, len(rules))}
	layers := []Actions{def}
	if own != nil {
		layers = []Actions{*own, def}
	}
	for i, r := range rules {
		t.actions[i] = r.Default
		for _, a := range layers {
			if act, ok := a.Rules[r.ID]; ok {
				t.actions[i] = act
				break
			}
			if act, ok := a.Packs[r.Pack]; ok {
				t.actions[i] = act
				break
			}
			if a.Default != "" && r.Pack != PackExternal && r.Pack != PackScanner {
				t.actions[i] = a.Default
				break
			}
		}
	}
	for _, a := range layers {
		t.extRules = append(t.extRules, a.Rules)
		t.extPacks = append(t.extPacks, a.Packs[PackExternal])
	}
	return t
}

// external returns the action for an external checker's finding.
func (t *table) external(id string, suggested Action) Action {
	for i := range t.extRules {
		if a, ok := t.extRules[i][id]; ok {
			return a
		}
		if a := t.extPacks[i]; a != "" {
			return a
		}
	}
	if suggested.valid() {
		return suggested
	}
	return Flag
}

func newPolicy(rules []*rule, own *AgentPolicy, def AgentPolicy) policy {
	p := policy{hook: def.Hook}
	var in, out *Actions
	if own != nil {
		in, out = &own.Inbound, &own.Outbound
		if own.Hook != "" {
			p.hook = own.Hook
		}
	}
	if p.hook == "" {
		p.hook = HookOff
	}
	p.in = resolve(rules, in, def.Inbound)
	p.out = resolve(rules, out, def.Outbound)
	return p
}
