package gateway

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/schemas"
)

// TypeOperator is the type `tollgate agent add` takes for an operator,
// beside the identity types (IdentityTypes).
const TypeOperator = "operator"

// NewIdentity is an identity being registered (`tollgate agent add`).
type NewIdentity struct {
	ID, Type, Team string
	Tags           []string
	// PublicKey is its nkey public key.
	PublicKey string
}

// List names the list of the config file the identity belongs in: users,
// operators or agents (agents, tools and models).
func (n NewIdentity) List() string {
	switch n.Type {
	case "user":
		return "users"
	case TypeOperator:
		return "operators"
	}
	return "agents"
}

// Entry is the identity's entry in its list: an OperatorConfig or an
// IdentityConfig (a user's without a type, which users do not name).
func (n NewIdentity) Entry() any {
	switch n.Type {
	case TypeOperator:
		return OperatorConfig{ID: n.ID, PublicKey: n.PublicKey}
	case "user":
		return IdentityConfig{ID: n.ID, Team: n.Team, Tags: n.Tags, PublicKey: n.PublicKey}
	}
	return IdentityConfig{ID: n.ID, Type: n.Type, Team: n.Team, Tags: n.Tags, PublicKey: n.PublicKey}
}

// AddIdentity adds n to its list in the config file at path, editing the
// YAML tree so that comments and layout survive. An id the list holds
// already, or a config that would not be valid with n, is an error and
// nothing is written.
func AddIdentity(path string, n NewIdentity) error {
	d, err := addedDoc(path, n)
	if err != nil {
		return err
	}
	return d.write()
}

// CheckAddIdentity reports what AddIdentity would refuse, writing nothing:
// `tollgate agent add` checks before it creates the key file.
func CheckAddIdentity(path string, n NewIdentity) error {
	d, err := addedDoc(path, n)
	if err != nil {
		return err
	}
	_, err = d.render()
	return err
}

func addedDoc(path string, n NewIdentity) (*configDoc, error) {
	list := n.List()
	d, err := readConfigDoc(path)
	if err != nil {
		return nil, err
	}
	if l, _, _, err := d.find(n.ID); err == nil {
		return nil, fmt.Errorf("config: %s already has %q", l, n.ID)
	}
	root := d.doc.Content[0]
	var seq *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == list {
			seq = root.Content[i+1]
		}
	}
	if seq == nil {
		seq = &yaml.Node{Kind: yaml.SequenceNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: list}, seq)
	}
	if seq.Kind != yaml.SequenceNode {
		if seq.Tag != "!!null" {
			return nil, fmt.Errorf("config: %s is not a list", list)
		}
		seq.Kind, seq.Tag, seq.Value = yaml.SequenceNode, "", ""
	}
	var node yaml.Node
	if err := node.Encode(n.Entry()); err != nil {
		return nil, fmt.Errorf("config entry of %s: %w", n.ID, err)
	}
	seq.Content = append(seq.Content, &node)
	return d, nil
}

// RevokeToken adds a bearer token id to http.revoked_tokens of the config
// file at path; serve applies it on reload (SIGHUP).
func RevokeToken(path, id string) error {
	if !schemas.ValidID(id) {
		return fmt.Errorf("token id %q is not a valid id", id)
	}
	d, err := readConfigDoc(path)
	if err != nil {
		return err
	}
	httpNode := member(d.doc.Content[0], "http", yaml.MappingNode)
	if httpNode == nil {
		return errors.New("config: http is not a mapping")
	}
	seq := member(httpNode, "revoked_tokens", yaml.SequenceNode)
	if seq == nil {
		return errors.New("config: http.revoked_tokens is not a list")
	}
	for _, n := range seq.Content {
		if n.Value == id {
			return nil
		}
	}
	seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: id})
	return d.write()
}

// member returns the value of key in mapping m, adding an empty one of
// kind when missing; nil when it exists with another kind (null aside).
func member(m *yaml.Node, key string, kind yaml.Kind) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			continue
		}
		v := m.Content[i+1]
		if v.Kind == kind {
			return v
		}
		if v.Tag == "!!null" {
			v.Kind, v.Tag, v.Value = kind, "", ""
			return v
		}
		return nil
	}
	v := &yaml.Node{Kind: kind}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	return v
}
