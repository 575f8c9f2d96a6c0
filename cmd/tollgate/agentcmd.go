package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/schemas"
)

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Register agents, users, tools and models"}
	var keysDir, configPath, typ, team string
	var tags []string
	add := &cobra.Command{
		Use:   "add <id>",
		Short: "Create an identity's key (its NATS credential and signing key) and register it",
		Long: `Create a fresh nkey for the identity, write its seed to <keys>/<id>.nk
(mode 0600; give it to the agent and to nobody else), and print its public key.
With --config, the identity is added to the gateway config file too; restart
serve to let it connect.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := schemas.CheckPrincipalID(id); err != nil {
				return err
			}
			if _, ok := gateway.IdentityTypes[typ]; !ok && typ != "operator" {
				return fmt.Errorf("--type %q is not agent, tool, model, user or operator", typ)
			}
			kp, err := broker.NewKey()
			if err != nil {
				return err
			}
			pub, err := kp.PublicKey()
			if err != nil {
				return err
			}
			seedPath := filepath.Join(keysDir, id+".nk")
			if err := broker.WriteSeed(seedPath, kp); err != nil {
				return err
			}
			var entry any = gateway.IdentityConfig{ID: id, Type: typ, Team: team, Tags: tags, PublicKey: pub}
			switch typ {
			case "operator":
				entry = gateway.OperatorConfig{ID: id, PublicKey: pub}
			case "user":
				entry = gateway.IdentityConfig{ID: id, Team: team, Tags: tags, PublicKey: pub}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "created %s %s\n  key seed:   %s (keep it secret)\n  public key: %s\n", typ, id, seedPath, pub)
			if configPath == "" {
				snippet, err := yaml.Marshal([]any{entry})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "\nadd to the %s of your gateway config:\n%s", listFor(typ), snippet)
				return nil
			}
			if err := addToConfig(configPath, listFor(typ), id, entry); err != nil {
				return err
			}
			fmt.Fprintf(out, "  registered in %s under %s\n", configPath, listFor(typ))
			return nil
		},
	}
	add.Flags().StringVar(&keysDir, "keys", "keys", "folder for the key seed")
	add.Flags().StringVarP(&configPath, "config", "c", "", "gateway config file to register the identity in")
	add.Flags().StringVar(&typ, "type", "agent", "agent, tool, model, user or operator")
	add.Flags().StringVar(&team, "team", "", "team (a Cedar attribute)")
	add.Flags().StringSliceVar(&tags, "tags", nil, "tags (a Cedar attribute), comma separated")
	cmd.AddCommand(add)
	return cmd
}

func listFor(typ string) string {
	switch typ {
	case "user":
		return "users"
	case "operator":
		return "operators"
	}
	return "agents"
}

// addToConfig appends an identity to a list of the config file, editing
// the YAML tree so that comments and layout survive.
func addToConfig(path, list, id string, entry any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return errors.New("config is not a YAML mapping")
	}
	root := doc.Content[0]
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
		if seq.Tag == "!!null" {
			seq.Kind, seq.Tag, seq.Value = yaml.SequenceNode, "", ""
		} else {
			return fmt.Errorf("config: %s is not a list", list)
		}
	}
	for _, n := range seq.Content {
		var existing struct {
			ID string `yaml:"id"`
		}
		if err := n.Decode(&existing); err == nil && existing.ID == id {
			return fmt.Errorf("config: %s already has %q", list, id)
		}
	}
	var node yaml.Node
	if err := node.Encode(entry); err != nil {
		return err
	}
	seq.Content = append(seq.Content, &node)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}
