package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

func newReloadCmd() *cobra.Command {
	var url, keyPath, id, prefix, configPath, reason string
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Have the running gateway re-read its config file (a signed operator command)",
		Long: `Have the running gateway re-read its config file, as SIGHUP does: policies,
audit policies, limits, workflows and identities. The request is signed with
the operator's key and sent on tg.ctl.reload. A config that fails validation
is refused with every problem listed, and the running one keeps serving; a
disabled or removed identity is cut off at once.

The gateway is --nats URL, or the one --config names (its nats.url, or for
an embedded gateway its nats.listen address).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" && configPath != "" {
				cfg, err := gateway.LoadConfig(configPath)
				if err != nil {
					return err
				}
				if url, err = cfg.ClientURL(); err != nil {
					return err
				}
			}
			if url == "" {
				url = "nats://" + gateway.DefaultListen
			}
			kp, err := broker.LoadSeed(keyPath)
			if err != nil {
				return err
			}
			subjects, err := broker.NewSubjects(prefix, "")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, err := operator.ConnectContext(ctx, operator.Config{ID: id, Key: kp, URL: url, Subjects: &subjects})
			if err != nil {
				return err
			}
			defer c.Close()
			reply, err := c.Reload(ctx, reason)
			if asJSON && reply != nil {
				return errors.Join(writeJSON(cmd.OutOrStdout(), reply), err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: %d identities, %d policies in force\n", reply.Identities, reply.Policies)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "nats", "", "NATS URL of the gateway (default: from --config, else nats://"+gateway.DefaultListen+")")
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "the gateway's config file, to find it")
	cmd.Flags().StringVar(&keyPath, "key", "", "the operator's nkey seed file (tollgate agent add <id> --type operator)")
	cmd.Flags().StringVar(&id, "operator", "", "the operator's id as registered in the gateway config")
	cmd.Flags().StringVar(&reason, "reason", "", "why (logged by the gateway)")
	cmd.Flags().StringVar(&prefix, "subject-prefix", broker.DefaultPrefix, "the gateway's subject prefix")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the gateway")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the gateway's answer as JSON")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("operator")
	return cmd
}
