package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/schemas"
)

func newConsoleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "console", Short: "The web console on the admin listener (docs/console.md)"}
	var name string
	var asJSON bool
	token := &cobra.Command{
		Use:   "token",
		Short: "Make a console token: give the token to its readers, put its hash in the config",
		Long: `Make a random console token. Readers log in to the console with the token
(read access: runs, run pages, what-if, spend); the gateway config holds only
its SHA-256, under admin.console.tokens. Halting a run needs an operator's
login (operator id and nkey seed) instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := schemas.CheckPrincipalID(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			tok, hash, err := console.NewToken()
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"name": name, "token": tok, "sha256": hash})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Token (give it to the console's readers; it is not stored anywhere):\n\n    %s\n\n", tok)
			fmt.Fprintf(cmd.OutOrStdout(), "Add to the gateway config (serve reloads on SIGHUP):\n\nadmin:\n  console:\n    tokens:\n      - name: %s\n        sha256: %s\n", name, hash)
			return nil
		},
	}
	token.Flags().StringVar(&name, "name", "auditors", "the token's name, for the logs")
	token.Flags().BoolVar(&asJSON, "json", false, "print the token and its hash as JSON")
	cmd.AddCommand(token)
	return cmd
}
