package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
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
			if _, ok := gateway.IdentityTypes[typ]; !ok && typ != gateway.TypeOperator {
				return fmt.Errorf("--type %q is not agent, tool, model, user or operator", typ)
			}
			seedPath := filepath.Join(keysDir, id+broker.SeedExt)
			pub, err := broker.NewSeedFile(seedPath)
			if err != nil {
				return err
			}
			n := gateway.NewIdentity{ID: id, Type: typ, Team: team, Tags: tags, PublicKey: pub}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "created %s %s\n  key seed:   %s (keep it secret)\n  public key: %s\n", typ, id, seedPath, pub)
			if configPath == "" {
				snippet, err := yaml.Marshal([]any{n.Entry()})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "\nadd to the %s of your gateway config:\n%s", n.List(), snippet)
				return nil
			}
			if err := gateway.AddIdentity(configPath, n); err != nil {
				return err
			}
			fmt.Fprintf(out, "  registered in %s under %s\n", configPath, n.List())
			return nil
		},
	}
	add.Flags().StringVar(&keysDir, "keys", "keys", "folder for the key seed")
	add.Flags().StringVarP(&configPath, "config", "c", "", "gateway config file to register the identity in")
	add.Flags().StringVar(&typ, "type", "agent", "agent, tool, model, user or operator")
	add.Flags().StringVar(&team, "team", "", "team (a Cedar attribute)")
	add.Flags().StringSliceVar(&tags, "tags", nil, "tags (a Cedar attribute), comma separated")
	cmd.AddCommand(add, newTokenCmd())
	return cmd
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with Cedar policies"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate <file|glob>...",
		Short: "Check policies against Tollgate's Cedar schema",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := policy.ReadFiles(args)
			if err != nil {
				return err
			}
			set, err := policy.Compile(files)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies in %d files match the schema:\n", set.Len(), len(files))
			for _, id := range set.IDs() {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", id)
			}
			return nil
		},
	})
	return cmd
}

func newNATSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nats", Short: "Set up an external NATS server for the gateway"}
	var configPath, out string
	accounts := &cobra.Command{
		Use:   "accounts",
		Short: "Write the accounts block an external NATS server's config includes",
		Long: `Write the NATS server config's accounts block for a gateway config: the
gateway account with its streams' exports, one account per identity and
operator importing only what it may reach, and (with nats.system_credentials)
the system account user the gateway reloads the servers with.

Use it once to bootstrap a server before the gateway first connects: include
the file in the server's config (include accounts.conf). With
nats.accounts_file set, serve keeps the file up to date itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gateway.LoadConfig(configPath)
			if err != nil {
				return err
			}
			text, err := gateway.AccountsConfig(cfg)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = fmt.Fprint(cmd.OutOrStdout(), text)
				return err
			}
			return os.WriteFile(out, []byte(text), 0o600)
		},
	}
	accounts.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	accounts.Flags().StringVarP(&out, "out", "o", "", "write to this file instead of standard output")
	cmd.AddCommand(accounts)
	return cmd
}
