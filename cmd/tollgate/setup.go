package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with Cedar policies"}
	var asJSON bool
	validate := &cobra.Command{
		Use:   "validate <file|glob>...",
		Short: "Check policies against Tollgate's Cedar schema (syntax errors are shown with their line and a caret)",
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
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"files": len(files), "policies": set.IDs()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies in %d files match the schema:\n", set.Len(), len(files))
			for _, id := range set.IDs() {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", id)
			}
			return nil
		},
	}
	validate.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(validate)
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
