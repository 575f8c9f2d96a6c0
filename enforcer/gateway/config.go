package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/notify"

	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/broker/tools"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/tracing"
	"github.com/tollgate/tollgate/projections"
	"github.com/tollgate/tollgate/schemas"
)

// Config is the gateway config file (YAML). See docs/config.md.
type Config struct {
	NATS      NATSConfig       `yaml:"nats"`
	Agents    []IdentityConfig `yaml:"agents"`
	Users     []IdentityConfig `yaml:"users"`
	Operators []OperatorConfig `yaml:"operators"`
	// Policies are Cedar files or globs, relative to the config file.
	Policies []string `yaml:"policies"`
	// AuditPolicies are evaluated on every allowed invoke but only
	// recorded: what they would deny lands in the hop's audit findings.
	AuditPolicies []string       `yaml:"audit_policies"`
	RunLimits     limits.Run     `yaml:"run_limits"`
	PerAgent      PerAgentConfig `yaml:"per_agent"`
	// PerPrincipal bounds what is done on behalf of one principal.
	PerPrincipal limits.Principal          `yaml:"per_principal"`
	Workflows    map[string]WorkflowConfig `yaml:"workflows"`
	// Quotas bound spend across runs over hour, day, month or rolling
	// windows (docs/limits.md); QuotaTimeZone is the IANA zone calendar
	// windows align to (default UTC).
	Quotas        []limits.Quota `yaml:"quotas"`
	QuotaTimeZone string         `yaml:"quota_time_zone"`
	// SpendSpikes raises alerts when an agent's or a team's cost rate
	// spikes past its trailing baseline (docs/limits.md).
	SpendSpikes limits.SpendSpikes `yaml:"spend_spikes"`
	Enforcer    EnforcerConfig     `yaml:"enforcer"`
	// Tracing selects where hop spans go (none by default).
	Tracing tracing.Config `yaml:"tracing"`
	// ClickHouse, with a DSN, makes serve project the ledger into it.
	ClickHouse ClickHouseConfig `yaml:"clickhouse"`
	// Admin is the operators' HTTP listener: health, metrics, the console.
	Admin AdminConfig `yaml:"admin"`
	// HTTP is the agents' HTTP listener: the A2A ingress (and the model
	// and tool gateways), with per-identity bearer tokens.
	HTTP HTTPConfig `yaml:"http"`
	// Bridges put existing A2A servers behind the gateway as agents.
	Bridges []BridgeConfig `yaml:"bridges"`
	// Guardrails scan every governed message (on unless disabled).
	Guardrails GuardrailsConfig `yaml:"guardrails"`
	// Alerts, with sinks, makes serve deliver every alert to them
	// (webhooks, Slack, a command); see docs/operations.md.
	Alerts notify.Config `yaml:"alerts"`

	// Models are the models the gateway serves (call_model hops), each a
	// registered model identity with its upstream (docs/models-and-tools.md).
	Models []ModelConfig `yaml:"models"`
	// MCPServers are the MCP servers the gateway fronts; Tools the
	// governed tools of them (call_tool hops), each a tool identity.
	MCPServers []tools.ServerConfig `yaml:"mcp_servers"`
	Tools      []ToolConfig         `yaml:"tools"`

	// dir is the folder of the config file; relative paths start there.
	dir string
}

// NATSConfig says where the bus is.
type NATSConfig struct {
	// URL of an external NATS server; empty runs an embedded one.
	URL string `yaml:"url"`
	// Credentials is the gateway's nkey seed file on an external server.
	Credentials string `yaml:"credentials"`
	// DataDir is the embedded server's JetStream store.
	DataDir string `yaml:"data_dir"`
	// Listen is the embedded server's client address; "none" serves only
	// in-process connections.
	Listen        string `yaml:"listen"`
	SubjectPrefix string `yaml:"subject_prefix"`
	StreamPrefix  string `yaml:"stream_prefix"`
	Replicas      int    `yaml:"replicas"`
	// DeliverMaxAge is how long deliveries are kept (and so how long a
	// crashed enforcer may stay down without a second delivery).
	DeliverMaxAge time.Duration `yaml:"deliver_max_age"`
	// AgentAckWait is how long an agent may hold a delivery without
	// acknowledging it (or saying it still works on it) before it is
	// delivered again; default one minute. The agent client says it is
	// working every third of it, so this bounds how late a task whose
	// acknowledgement a crash lost comes back.
	AgentAckWait time.Duration `yaml:"agent_ack_wait"`
	// Sync is the embedded server's file-store durability: "always"
	// fsyncs every write before acknowledging it (survives power loss),
	// a duration fsyncs that often (survives a process kill; a power loss
	// may lose what was written since the last sync). Default
	// DefaultSyncInterval. See docs/reliability.md.
	Sync string `yaml:"sync"`
	// LedgerMaxBytes caps the ledger stream; at the cap the gateway fails
	// closed (every submission is denied "unavailable", nothing forwarded)
	// until there is room. Zero: no cap but the disk.
	LedgerMaxBytes int64 `yaml:"ledger_max_bytes"`
	// Partitions partitions the runs across gateway instances: SUBMIT
	// maps each submission to partition(n) of its run token, and each
	// partition is owned by one instance at a time (docs/scaling.md). Zero:
	// one queue shared by every instance. Every instance must say the same.
	Partitions int `yaml:"partitions"`
	// AccountsFile, with an external server, is where the gateway writes
	// the accounts block of the server's config (the server's config
	// includes it; see docs/operations.md). It is rewritten at start and on
	// every reload.
	AccountsFile string `yaml:"accounts_file"`
	// SystemCredentials, with an external server, is the nkey seed of a
	// user of the server's system account: with it the gateway reloads
	// every server's config itself after writing AccountsFile, so identity
	// changes take effect without anyone touching the servers.
	SystemCredentials string `yaml:"system_credentials"`
}

// IdentityConfig registers an agent, tool, model or user.
type IdentityConfig struct {
	ID   string   `yaml:"id"`
	Type string   `yaml:"type,omitempty"` // agent (default), tool, model; users: user
	Team string   `yaml:"team,omitempty"`
	Tags []string `yaml:"tags,omitempty,flow"`
	// PublicKey is the nkey public key ("U...") from `tollgate agent add`.
	PublicKey string `yaml:"public_key,omitempty"`
	// RequireSignature defaults to true when a public key is set.
	RequireSignature *bool  `yaml:"require_signature,omitempty"`
	TimeoutSeconds   int    `yaml:"timeout_seconds,omitempty"`
	Workflow         string `yaml:"workflow,omitempty"`
	Disabled         bool   `yaml:"disabled,omitempty"`
	// Untrusted taints every hop the identity makes and every reply it
	// sends (docs/guardrails.md).
	Untrusted bool `yaml:"untrusted,omitempty"`
	// Environment is the deployment environment the identity runs in
	// (production, staging, ...), a quota scope.
	Environment string `yaml:"environment,omitempty"`
	// Retry, Fallback and Breaker govern the delivery of hops to this
	// agent (docs/limits.md, retries and fallbacks).
	Retry    limits.Retry   `yaml:"retry,omitempty"`
	Fallback []string       `yaml:"fallback,omitempty,flow"`
	Breaker  limits.Breaker `yaml:"breaker,omitempty"`
	// InvokeRateLimit and Mode override per_agent for this agent.
	InvokeRateLimit *ratelimit.Rate `yaml:"invoke_rate_limit,omitempty"`
	Mode            string          `yaml:"mode,omitempty"`
}

// PerAgentConfig governs every calling agent unless the agent overrides it.
type PerAgentConfig struct {
	// RejectRateLimit bounds the agent's submissions the integrity checks
	// deny; past it they are dropped unrecorded (default 600/min).
	RejectRateLimit ratelimit.Rate `yaml:"reject_rate_limit"`
	// InvokeRateLimit bounds each agent's invokes fleet-wide ("60/min").
	InvokeRateLimit ratelimit.Rate `yaml:"invoke_rate_limit"`
	// TimeoutSeconds is a hop's timeout when its target sets none.
	TimeoutSeconds int `yaml:"timeout_seconds"`
	// Mode is enforce (default) or audit.
	Mode string `yaml:"mode"`
}

// WorkflowConfig overrides run limits for the runs of one workflow.
type WorkflowConfig struct {
	RunLimits limits.Run `yaml:"run_limits"`
	// Retries override the retry policy of hops to each named agent in
	// this workflow's runs.
	Retries map[string]limits.Retry `yaml:"retries"`
}

// RequiresSignature is require_signature, defaulting to true with a key.
func (ic IdentityConfig) RequiresSignature() bool {
	if ic.RequireSignature != nil {
		return *ic.RequireSignature
	}
	return ic.PublicKey != ""
}

// OperatorConfig registers an operator allowed to send control commands.
type OperatorConfig struct {
	ID        string `yaml:"id"`
	PublicKey string `yaml:"public_key"`
	// Groups are the approver groups the operator belongs to: a hop held
	// by a policy annotated @approvers("finance") is answered only by an
	// operator of group finance.
	Groups []string `yaml:"groups,omitempty,flow"`
}

// EnforcerConfig tunes the enforcer.
type EnforcerConfig struct {
	Shards           int           `yaml:"shards"`
	MaxEnvelopeBytes int           `yaml:"max_envelope_bytes"`
	ReplayWindow     time.Duration `yaml:"replay_window"`
	DefaultTimeout   time.Duration `yaml:"default_timeout"`
	AckWait          time.Duration `yaml:"ack_wait"`
	MaxAckPending    int           `yaml:"max_ack_pending"`
	// Connections is how many extra NATS connections shards append and
	// forward on (default 4; see docs/config.md).
	Connections *int `yaml:"connections"`
	// RunCacheBytes bounds the run states kept in memory (default 128 MiB).
	RunCacheBytes int `yaml:"run_cache_bytes"`
	// MemoryLimit is the soft limit of the serve process's memory
	// (runtime/debug.SetMemoryLimit), default run_cache_bytes plus
	// MemoryOverhead (512 MiB with the default cache); GOMEMLIMIT in the
	// environment wins. -1 sets none.
	MemoryLimit int64 `yaml:"memory_limit"`
	// ApprovalTimeout is how long a hop held for approval waits before it
	// is rejected (default 1 hour).
	ApprovalTimeout time.Duration `yaml:"approval_timeout"`
	// MaxProgressPerHop bounds the progress messages a hop's target may
	// send its caller (default 100; docs/a2a-nats-binding.md).
	MaxProgressPerHop int `yaml:"max_progress_per_hop"`
	// Instance and Instances say which run partitions this instance
	// prefers (p mod instances = instance); it stands by for the others
	// (docs/scaling.md).
	Instance  int `yaml:"instance"`
	Instances int `yaml:"instances"`
	// PinnedTTL is how long a partition stays with an instance that stopped
	// pulling: how soon a dead instance's partitions move (default 5s).
	PinnedTTL time.Duration `yaml:"pinned_ttl"`
	// ReclaimInterval is how often an instance takes back the partitions
	// it prefers from another that holds them (after a restart); default
	// pinned_ttl, negative for never (docs/scaling.md).
	ReclaimInterval time.Duration `yaml:"reclaim_interval"`
	// BindWindow is how recently a target's consumer must have taken a
	// delivery (with no pull request waiting) to count as bound; a target
	// with fallbacks and none bound has its hops re-routed. Default 10s.
	BindWindow time.Duration `yaml:"bind_window"`
}

// DefaultListen is the embedded server's address: not NATS's 4222, which a
// system NATS server may hold.
const DefaultListen = "127.0.0.1:4250"

// ListenNone as nats.listen serves in-process connections only.
const ListenNone = "none"

// LoadConfig reads a config file strictly, fills defaults and validates
// it, reporting every problem at once: unknown keys and type errors (strict
// YAML decoding) in one list with the semantic ones, each with its line
// where it has one.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, b)
}

// parseConfig decodes and validates the config file at path, whose bytes
// are b.
func parseConfig(path string, b []byte) (*Config, error) {
	var cfg Config
	var errs []error
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		// The rest of the file decoded: check it too.
		for _, e := range te.Errors {
			errs = append(errs, errors.New(strings.TrimPrefix(e, "yaml: ")))
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	cfg.dir = filepath.Dir(abs)
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		errs = append(errs, withLines(b, flatten(err))...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("config %s:\n%w", path, errors.Join(errs...))
	}
	return &cfg, nil
}

// flatten lists the errors a joined error holds.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// withLines prefixes each semantic error with the line of the config
// entry it names (an identity or operator by its quoted id, else the
// section it starts with), when there is one.
func withLines(b []byte, errs []error) []error {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return errs
	}
	root := doc.Content[0]
	sections, ids := map[string]int{}, map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		sections[key.Value] = key.Line
		if val.Kind != yaml.SequenceNode {
			continue
		}
		for _, entry := range val.Content {
			for j := 0; entry.Kind == yaml.MappingNode && j+1 < len(entry.Content); j += 2 {
				if entry.Content[j].Value == "id" {
					ids[strconv.Quote(entry.Content[j+1].Value)] = entry.Line
				}
			}
		}
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		// The identity named first is the one the error is about.
		msg, line, at := e.Error(), 0, len(e.Error())
		for id, l := range ids {
			if i := strings.Index(msg, id); i >= 0 && i < at {
				line, at = l, i
			}
		}
		if line == 0 {
			for name, l := range sections {
				if strings.HasPrefix(msg, name) {
					line = l
				}
			}
		}
		out[i] = e
		if line > 0 {
			out[i] = fmt.Errorf("line %d: %w", line, e)
		}
	}
	return out
}

// SetDefaults fills what the config leaves out.
func (c *Config) SetDefaults() {
	if c.NATS.URL == "" {
		if c.NATS.DataDir == "" {
			c.NATS.DataDir = "data"
		}
		if c.NATS.Listen == "" {
			c.NATS.Listen = DefaultListen
		}
	}
	if c.NATS.SubjectPrefix == "" {
		c.NATS.SubjectPrefix = broker.DefaultPrefix
	}
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	for i := range c.Agents {
		if c.Agents[i].Type == "" {
			c.Agents[i].Type = "agent"
		}
	}
	for i := range c.Users {
		if c.Users[i].Type == "" {
			c.Users[i].Type = "user"
		}
	}
}

// Path resolves p against the config file's folder.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Validate reports every problem with the config.
func (c *Config) Validate() error { return c.validate(true) }

// validate checks the config; needPolicies is false when the policies are
// given in memory (Options.Policies) instead of as files.
func (c *Config) validate(needPolicies bool) error {
	var errs []error
	if _, err := broker.NewSubjects(c.NATS.SubjectPrefix, c.NATS.StreamPrefix); err != nil {
		errs = append(errs, fmt.Errorf("nats: %w", err))
	}
	if c.NATS.URL != "" && c.NATS.Credentials == "" {
		errs = append(errs, errors.New("nats: an external server (url) needs the gateway's credentials (nkey seed file)"))
	}
	if c.NATS.URL == "" && (c.NATS.AccountsFile != "" || c.NATS.SystemCredentials != "") {
		errs = append(errs, errors.New("nats: accounts_file and system_credentials are for an external server (url)"))
	}
	if c.NATS.SystemCredentials != "" && c.NATS.AccountsFile == "" {
		errs = append(errs, errors.New("nats: system_credentials reloads the servers after writing accounts_file, which is not set"))
	}
	if _, _, err := c.NATS.syncOptions(); err != nil {
		errs = append(errs, err)
	}
	if c.NATS.AgentAckWait < 0 {
		errs = append(errs, fmt.Errorf("nats.agent_ack_wait is %s, want a positive duration", c.NATS.AgentAckWait))
	}
	if c.Enforcer.Instance < 0 || c.Enforcer.Instances < 0 || c.Enforcer.Instance > 0 && c.Enforcer.Instance >= c.Enforcer.Instances {
		errs = append(errs, fmt.Errorf("enforcer.instance is %d of %d, want 0 to instances-1", c.Enforcer.Instance, c.Enforcer.Instances))
	}
	if c.NATS.Partitions < 0 || c.NATS.Partitions > broker.MaxPartitions {
		errs = append(errs, fmt.Errorf("nats.partitions is %d, want 0 to %d", c.NATS.Partitions, broker.MaxPartitions))
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		errs = append(errs, fmt.Errorf("nats.replicas is %d, want 1 to 5", c.NATS.Replicas))
	}
	dir, err := c.Directory()
	if err != nil {
		errs = append(errs, err)
	}
	if err := c.validateHops(dir); err != nil {
		errs = append(errs, err)
	}
	if c.QuotaTimeZone != "" {
		if _, err := time.LoadLocation(c.QuotaTimeZone); err != nil {
			errs = append(errs, fmt.Errorf("quota_time_zone %q: %w", c.QuotaTimeZone, err))
		}
	}
	if c.NATS.URL == "" {
		for _, id := range append(append([]IdentityConfig{}, c.Agents...), c.Users...) {
			if id.PublicKey == "" && !id.Disabled {
				errs = append(errs, fmt.Errorf("%s %q: public_key is required with the embedded server (it is the identity's NATS credential; create one with `tollgate agent add %s`)", id.Type, id.ID, id.ID))
			}
		}
	}
	for i, op := range c.Operators {
		if err := schemas.CheckPrincipalID(op.ID); err != nil {
			errs = append(errs, fmt.Errorf("operators[%d]: %w", i, err))
		}
		if _, err := broker.ParsePublicKey(op.PublicKey); err != nil {
			errs = append(errs, fmt.Errorf("operators[%d] %q: %w", i, op.ID, err))
		}
		for _, g := range op.Groups {
			if err := schemas.CheckPrincipalID(g); err != nil {
				errs = append(errs, fmt.Errorf("operators[%d] %q: group %q: %w", i, op.ID, g, err))
			}
		}
	}
	errs = append(errs, c.sharedKeys()...)
	if needPolicies && len(c.Policies) == 0 {
		errs = append(errs, errors.New("policies: at least one Cedar file is required (default deny would refuse every hop)"))
	}
	if err := c.ClickHouse.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("clickhouse: %w", err))
	}
	if err := c.EnforcerConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("enforcer: %w", err))
	}
	if err := c.Tracing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.HTTP.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateBridges(); err != nil {
		errs = append(errs, err)
	}
	if c.HTTP.Listen != "" && c.HTTPKeysDir() == "" {
		errs = append(errs, errors.New("http.keys: with an external NATS server, name the folder of the HTTP listener's keys"))
	}
	if err := c.Admin.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Guardrails.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Alerts.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sharedKeys reports every public key that two identities or operators
// hold: a key is one identity's credential, never shared.
func (c *Config) sharedKeys() []error {
	owner := map[string]string{}
	var errs []error
	note := func(who, key string) {
		if key == "" {
			return
		}
		if first, ok := owner[key]; ok {
			errs = append(errs, fmt.Errorf("%s: public_key %s is also %s's: every identity needs a key of its own", who, key, first))
			return
		}
		owner[key] = who
	}
	for _, a := range c.Agents {
		note(fmt.Sprintf("agents %q", a.ID), a.PublicKey)
	}
	for _, u := range c.Users {
		note(fmt.Sprintf("users %q", u.ID), u.PublicKey)
	}
	for _, op := range c.Operators {
		note(fmt.Sprintf("operators %q", op.ID), op.PublicKey)
	}
	return errs
}

// Directory builds the identity directory of the config.
func (c *Config) Directory() (*broker.Directory, error) {
	var ids []broker.Identity
	var errs []error
	add := func(list string, ic IdentityConfig, allowed ...string) {
		typ, ok := IdentityTypes[ic.Type]
		if !ok || !slices.Contains(allowed, ic.Type) {
			errs = append(errs, fmt.Errorf("%s %q: type %q is not one of %v", list, ic.ID, ic.Type, allowed))
		}
		require := ic.RequiresSignature()
		if ic.TimeoutSeconds < 0 {
			errs = append(errs, fmt.Errorf("%s %q: timeout_seconds must not be negative", list, ic.ID))
		}
		ids = append(ids, broker.Identity{
			ID: ic.ID, Type: typ, Team: ic.Team, Tags: ic.Tags, PublicKey: ic.PublicKey, RequireSignature: require,
			Timeout: time.Duration(ic.TimeoutSeconds) * time.Second, Workflow: ic.Workflow, Disabled: ic.Disabled, Untrusted: ic.Untrusted,
			Environment: ic.Environment,
		})
	}
	for _, a := range c.Agents {
		add("agents", a, "agent", "tool", "model")
	}
	for _, u := range c.Users {
		add("users", u, "user")
	}
	// A tool whose MCP server is untrusted is untrusted itself. A tool of
	// an MCP server is the Cedar resource Tool::"<server>/<tool>", and its
	// rate_limit is checked by the enforcer at admission.
	for _, t := range c.untrustedTools() {
		for i := range ids {
			if ids[i].ID == t {
				ids[i].Untrusted = true
			}
		}
	}
	for _, t := range c.Tools {
		tc := t.Config
		tc.SetDefaults()
		for i := range ids {
			if ids[i].ID == tc.ID && ids[i].Type == schemas.TypeTool {
				ids[i].Resource, ids[i].RateLimit = schemas.ToolResource(tc.Server, tc.Tool), tc.RateLimit
			}
		}
	}
	dir, err := broker.NewDirectory(ids)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return dir, nil
}

// Identities returns every identity the config registers; none when they
// do not validate.
func (c *Config) Identities() []broker.Identity {
	dir, err := c.Directory()
	if err != nil {
		return nil
	}
	var ids []broker.Identity
	for _, id := range dir.All() {
		ids = append(ids, *id)
	}
	return ids
}

// IdentityTypes maps the identity types of the config file to principal
// types.
var IdentityTypes = map[string]schemas.PrincipalType{
	"agent": schemas.TypeAgent, "tool": schemas.TypeTool, "model": schemas.TypeModel, "user": schemas.TypeUser,
}

// EnforcerConfig is the enforcer's part of the config.
func (c *Config) EnforcerConfig() enforcer.Config {
	ec := enforcer.Config{
		Limits: c.RunLimits, Shards: c.Enforcer.Shards, MaxEnvelopeBytes: c.Enforcer.MaxEnvelopeBytes,
		ReplayWindow: c.Enforcer.ReplayWindow, DefaultTimeout: c.Enforcer.DefaultTimeout,
		AckWait: c.Enforcer.AckWait, MaxAckPending: c.Enforcer.MaxAckPending, RunCacheBytes: c.Enforcer.RunCacheBytes,
		Partitions: c.NATS.Partitions, Instance: c.Enforcer.Instance, Instances: c.Enforcer.Instances, PinnedTTL: c.Enforcer.PinnedTTL, ReclaimInterval: c.Enforcer.ReclaimInterval,
		PerAgent:     limits.Agent{InvokeRateLimit: c.PerAgent.InvokeRateLimit, Mode: c.PerAgent.Mode, RejectRateLimit: c.PerAgent.RejectRateLimit},
		PerPrincipal: c.PerPrincipal,
		Quotas:       c.Quotas,
		SpendSpikes:  c.SpendSpikes,
		Agents:       map[string]limits.Agent{},
		Workflows:    map[string]limits.Run{},
		Operators:    map[string]string{},
	}
	if c.PerAgent.TimeoutSeconds > 0 {
		ec.DefaultTimeout = time.Duration(c.PerAgent.TimeoutSeconds) * time.Second
	}
	for _, a := range c.Agents {
		o := limits.Agent{Mode: a.Mode}
		if a.InvokeRateLimit != nil {
			o.InvokeRateLimit = *a.InvokeRateLimit
		}
		ec.Agents[a.ID] = o
	}
	for name, w := range c.Workflows {
		ec.Workflows[name] = w.RunLimits
		if len(w.Retries) > 0 {
			if ec.WorkflowRetries == nil {
				ec.WorkflowRetries = map[string]map[string]limits.Retry{}
			}
			ec.WorkflowRetries[name] = w.Retries
		}
	}
	for _, a := range c.Agents {
		if a.Retry.MaxAttempts != 0 || len(a.Fallback) > 0 || a.Breaker.Failures != 0 {
			if ec.Targets == nil {
				ec.Targets = map[string]limits.Target{}
			}
			ec.Targets[a.ID] = limits.Target{Retry: a.Retry, Fallback: a.Fallback, Breaker: a.Breaker}
		}
	}
	ec.OperatorGroups = map[string][]string{}
	for _, op := range c.Operators {
		ec.Operators[op.ID] = op.PublicKey
		ec.OperatorGroups[op.ID] = op.Groups
	}
	ec.ApprovalTimeout = c.Enforcer.ApprovalTimeout
	ec.MaxProgressPerHop = c.Enforcer.MaxProgressPerHop
	ec.BindWindow = c.Enforcer.BindWindow
	if zone, err := time.LoadLocation(c.QuotaTimeZone); err == nil && c.QuotaTimeZone != "" {
		ec.QuotaZone = zone
	}
	return ec
}

// ClickHouseConfig is the clickhouse section of the gateway config: with a
// DSN, serve runs the projector of the ledger into ClickHouse.
type ClickHouseConfig struct {
	// DSN is the ClickHouse server (native protocol), e.g.
	// clickhouse://127.0.0.1:9000/tollgate. Empty: no projections.
	DSN string `yaml:"dsn"`
	// Database defaults to the DSN's, else "tollgate".
	Database string `yaml:"database"`
	// BatchSize and FlushInterval bound a batch of inserts (default 20000
	// events, 1 s).
	BatchSize     int           `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// Validate reports every problem with the section; without a DSN there is
// nothing to check.
func (c *ClickHouseConfig) Validate() error {
	if c.DSN == "" {
		if c.Database != "" || c.BatchSize != 0 || c.FlushInterval != 0 {
			return errors.New("batch_size, flush_interval and database need a dsn")
		}
		return nil
	}
	return c.Projections().Validate()
}

// Projections is the projector config of the section, as the gateway's
// projector: the durable consumer broker.ProjectorConsumer.
func (c *ClickHouseConfig) Projections() projections.Config {
	return projections.Config{DSN: c.DSN, Database: c.Database, BatchSize: c.BatchSize, FlushInterval: c.FlushInterval,
		Consumer: broker.ProjectorConsumer}
}

// ProjectionsConfig is the projections config of a ClickHouse DSN and
// database given on their own (the CLI's flags) or, when dsn is empty, of
// cfg's clickhouse section, with database, when set, instead of the
// section's. Its consumer is the gateway's projector's. No DSN at all is
// ErrNoClickHouse.
func ProjectionsConfig(cfg *Config, dsn, database string) (projections.Config, error) {
	pc := projections.Config{DSN: dsn, Database: database, Consumer: broker.ProjectorConsumer}
	if dsn == "" && cfg != nil && cfg.ClickHouse.DSN != "" {
		pc = cfg.ClickHouse.Projections()
		if database != "" {
			pc.Database = database
		}
	}
	if pc.DSN == "" {
		return pc, ErrNoClickHouse
	}
	return pc, pc.Validate()
}

// DefaultSyncInterval is how often the embedded server fsyncs its file
// store unless nats.sync says otherwise: measured free next to the
// server's own 2-minute default (docs/reliability.md), it bounds what a
// power loss can take to the last second.
const DefaultSyncInterval = time.Second

// syncOptions reads nats.sync: always, or an fsync interval.
func (c NATSConfig) syncOptions() (always bool, interval time.Duration, err error) {
	if c.Sync != "" && c.URL != "" {
		return false, 0, errors.New("nats.sync is for the embedded server; set sync_interval in an external server's jetstream block")
	}
	switch c.Sync {
	case "":
		return false, DefaultSyncInterval, nil
	case "always":
		return true, 0, nil
	}
	d, err := time.ParseDuration(c.Sync)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("nats.sync is %q, want \"always\" or a positive duration such as 1s", c.Sync)
	}
	return false, d, nil
}

// Layout is the bus layout of the config: the gateway's own keys, every
// identity of dir and every operator (see broker.AccountsConfig).
func (c *Config) Layout(dir *broker.Directory, gatewayKeys ...string) broker.Layout {
	l := broker.Layout{GatewayKeys: gatewayKeys, Identities: dir.All(), Operators: map[string]string{}}
	for _, op := range c.Operators {
		l.Operators[op.ID] = op.PublicKey
	}
	return l
}

// AdminConfig is the admin section: an HTTP listener for operators, off
// the agents' path.
type AdminConfig struct {
	// Listen is host:port; empty serves no admin listener.
	Listen string `yaml:"listen"`
	// Console is the web console served on the listener (docs/console.md).
	Console console.Config `yaml:"console"`
	// PprofTokenSHA256, when set, serves Go's runtime profiles at
	// /debug/pprof/ on the listener to callers presenting the token whose
	// SHA-256 (hex) it is as a bearer token, hashed as console tokens are
	// (`tollgate console token` makes one; docs/operations.md). Empty: no
	// profiles.
	PprofTokenSHA256 string `yaml:"pprof_token_sha256"`
}

// Validate checks the section.
func (c AdminConfig) Validate() error {
	var errs []error
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("admin.listen %q: %w", c.Listen, err))
		}
	}
	if h := c.PprofTokenSHA256; h != "" {
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			errs = append(errs, errors.New("admin.pprof_token_sha256 is not a hex SHA-256 (`tollgate console token` makes a token and its hash)"))
		}
		if c.Listen == "" {
			errs = append(errs, errors.New("admin.pprof_token_sha256 is set but admin.listen is not: there is no listener to serve the profiles on"))
		}
	}
	errs = append(errs, c.Console.Validate())
	return errors.Join(errs...)
}

// ClientURL is where clients in other processes reach the gateway's NATS:
// nats.url, or for an embedded gateway nats://<nats.listen>.
// ErrNoListener when the embedded server listens to none (nats.listen none).
func (c *Config) ClientURL() (string, error) {
	switch {
	case c.NATS.URL != "":
		return c.NATS.URL, nil
	case c.NATS.Listen == ListenNone:
		return "", ErrNoListener
	}
	return "nats://" + c.NATS.Listen, nil
}
