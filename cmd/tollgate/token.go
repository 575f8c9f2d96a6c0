package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/enforcer/gateway"
)

// newTokenCmd is 'tollgate agent token': per-identity bearer tokens for
// the HTTP listener.
func newTokenCmd() *cobra.Command {
	var configPath string
	var ttl time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "token <id>",
		Short: "Mint a bearer token for an identity's HTTP calls (A2A ingress, model and tool gateways)",
		Long: `Mint a bearer token bound to one registered identity, for the gateway's HTTP
listener (http.listen): "Authorization: Bearer <token>". It expires after
--ttl and is revoked with 'tollgate agent token revoke <token-id>'. The token
is minted with the key in the config's http.keys folder (created when
missing), so run this where serve's config and key folder are.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := gateway.LoadConfig(configPath)
			if err != nil {
				return err
			}
			cfg.SetDefaults()
			dir, err := cfg.Directory()
			if err != nil {
				return err
			}
			if _, ok := dir.Get(args[0]); !ok {
				return fmt.Errorf("%q is not an identity of %s", args[0], configPath)
			}
			k, err := cfg.BearerKeeper()
			if err != nil {
				return err
			}
			tok, c, err := k.Issue(args[0], ttl)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(struct {
					Token     string    `json:"token"`
					ID        string    `json:"id"`
					Identity  string    `json:"identity"`
					ExpiresAt time.Time `json:"expires_at"`
				}{tok, c.ID, c.Subject, c.Expires()})
			}
			fmt.Fprintln(out, tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s for %s, expires %s\n", c.ID, c.Subject, c.Expires().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	cmd.Flags().DurationVar(&ttl, "ttl", 30*24*time.Hour, "how long the token is valid")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the token and its claims as JSON")
	revoke := &cobra.Command{
		Use:   "revoke <token-id>",
		Short: "Revoke a bearer token (adds it to http.revoked_tokens; SIGHUP applies it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := gateway.RevokeToken(configPath, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s in %s; reload serve (SIGHUP) to apply\n", args[0], configPath)
			return nil
		},
	}
	revoke.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	cmd.AddCommand(revoke)
	return cmd
}
