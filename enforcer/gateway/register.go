package gateway

import (
	"fmt"

	"gopkg.in/yaml.v3"
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
