package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"

	"gopkg.in/yaml.v3"
)

// IdentityEntry is one identity or operator of a config file, as `tollgate
// agent list|show` prints it.
type IdentityEntry struct {
	// List is agents, users or operators.
	List      string   `json:"list"`
	ID        string   `json:"id"`
	Type      string   `json:"type"`
	Team      string   `json:"team,omitempty"`
	Tags      []string `json:"tags,omitempty"`
	PublicKey string   `json:"public_key,omitempty"`
	Disabled  bool     `json:"disabled,omitempty"`
	Untrusted bool     `json:"untrusted,omitempty"`
	// RequireSignature is whether its envelopes must be signed.
	RequireSignature bool     `json:"require_signature,omitempty"`
	Groups           []string `json:"groups,omitempty"`
}

// Entries lists the identities and operators of a config, in file order.
func (c *Config) Entries() []IdentityEntry {
	var out []IdentityEntry
	for _, l := range []struct {
		name string
		ids  []IdentityConfig
	}{{"agents", c.Agents}, {"users", c.Users}} {
		for _, ic := range l.ids {
			out = append(out, IdentityEntry{List: l.name, ID: ic.ID, Type: ic.Type, Team: ic.Team, Tags: ic.Tags, PublicKey: ic.PublicKey,
				Disabled: ic.Disabled, Untrusted: ic.Untrusted, RequireSignature: ic.RequiresSignature()})
		}
	}
	for _, op := range c.Operators {
		out = append(out, IdentityEntry{List: "operators", ID: op.ID, Type: TypeOperator, PublicKey: op.PublicKey, Groups: op.Groups})
	}
	return out
}

// ReadEntries lists the identities and operators of the config file at
// path without validating the rest of it, so that a config with problems
// can still be listed and mended.
func ReadEntries(path string) ([]IdentityEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var cfg Config
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	cfg.SetDefaults()
	return cfg.Entries(), nil
}

// ErrNoIdentity means a config file registers no identity of that id.
var ErrNoIdentity = errors.New("no such identity")

// configDoc is a config file's YAML tree, edited in place so that comments
// and layout survive.
type configDoc struct {
	path string
	doc  yaml.Node
}

func readConfigDoc(path string) (*configDoc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	d := &configDoc{path: path}
	if err := yaml.Unmarshal(b, &d.doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if d.doc.Kind != yaml.DocumentNode || len(d.doc.Content) == 0 || d.doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s is not a YAML mapping", path)
	}
	return d, nil
}

// find returns the list and the entry of id, searching agents, users and
// operators.
func (d *configDoc) find(id string) (list string, seq *yaml.Node, index int, err error) {
	root := d.doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		name, s := root.Content[i].Value, root.Content[i+1]
		if !slices.Contains([]string{"agents", "users", "operators"}, name) || s.Kind != yaml.SequenceNode {
			continue
		}
		for j, node := range s.Content {
			var e struct {
				ID string `yaml:"id"`
			}
			if node.Decode(&e) == nil && e.ID == id {
				return name, s, j, nil
			}
		}
	}
	return "", nil, 0, fmt.Errorf("%w: %s registers no agent, user, tool, model or operator %q", ErrNoIdentity, d.path, id)
}

// set sets key to value in a mapping node, adding it when missing; a nil
// value removes the key.
func set(m *yaml.Node, key string, value *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			if value == nil {
				m.Content = append(m.Content[:i], m.Content[i+2:]...)
			} else {
				m.Content[i+1] = value
			}
			return
		}
	}
	if value != nil {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, value)
	}
}

// render encodes the edited tree and checks that it is a valid config;
// nothing is written when it is not.
func (d *configDoc) render() ([]byte, error) {
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&d.doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", d.path, err)
	}
	if _, err := parseConfig(d.path, out.Bytes()); err != nil {
		return nil, fmt.Errorf("the edited config would not be valid, nothing written:\n%w", err)
	}
	return out.Bytes(), nil
}

// write renders the tree, checks it and replaces the file atomically.
func (d *configDoc) write() error {
	b, err := d.render()
	if err != nil {
		return err
	}
	tmp := d.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp, d.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// SetDisabled disables (or enables again) identity id in the config file at
// path. A running gateway cuts a disabled identity off at its next reload
// (SIGHUP, `tollgate reload`). Operators are removed, not disabled.
func SetDisabled(path, id string, disabled bool) error {
	d, err := readConfigDoc(path)
	if err != nil {
		return err
	}
	list, seq, i, err := d.find(id)
	if err != nil {
		return err
	}
	if list == "operators" {
		return fmt.Errorf("operator %q cannot be disabled: remove it (tollgate agent remove)", id)
	}
	var v *yaml.Node
	if disabled {
		v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}
	}
	set(seq.Content[i], "disabled", v)
	return d.write()
}

// SetPublicKey replaces identity (or operator) id's public key in the
// config file at path (a key rotation).
func SetPublicKey(path, id, pub string) error {
	d, err := readConfigDoc(path)
	if err != nil {
		return err
	}
	_, seq, i, err := d.find(id)
	if err != nil {
		return err
	}
	set(seq.Content[i], "public_key", &yaml.Node{Kind: yaml.ScalarNode, Value: pub})
	return d.write()
}

// CheckPublicKey reports whether the config at path, with identity id's
// key replaced by pub, is valid; nothing is written.
func CheckPublicKey(path, id, pub string) error {
	d, err := readConfigDoc(path)
	if err != nil {
		return err
	}
	_, seq, i, err := d.find(id)
	if err != nil {
		return err
	}
	set(seq.Content[i], "public_key", &yaml.Node{Kind: yaml.ScalarNode, Value: pub})
	_, err = d.render()
	return err
}

// RemoveIdentity removes identity (or operator) id from the config file at
// path; it returns the list it was in.
func RemoveIdentity(path, id string) (string, error) {
	d, err := readConfigDoc(path)
	if err != nil {
		return "", err
	}
	list, seq, i, err := d.find(id)
	if err != nil {
		return "", err
	}
	seq.Content = append(seq.Content[:i], seq.Content[i+1:]...)
	return list, d.write()
}

// CheckConfigFile lists every problem of the config file at path: strict
// YAML decoding (unknown keys, type errors) and the semantic checks, with
// line numbers where they have one, then the policy files it names (Cedar
// syntax and schema). None means the config would start a gateway.
func CheckConfigFile(path string) []string {
	cfg, err := LoadConfig(path)
	if err != nil {
		var out []string
		for _, e := range flatten(errors.Unwrap(err)) {
			out = append(out, e.Error())
		}
		if len(out) == 0 {
			out = []string{err.Error()}
		}
		return out
	}
	g := &Gateway{cfg: cfg}
	if err := g.compile(); err != nil {
		var out []string
		for _, e := range flatten(err) {
			out = append(out, e.Error())
		}
		return out
	}
	return nil
}
