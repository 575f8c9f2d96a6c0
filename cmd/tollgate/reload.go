package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newReloadCmd() *cobra.Command {
	var op opFlags
	var reason string
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
			ctx, cancel := context.WithTimeout(cmd.Context(), op.timeout)
			defer cancel()
			c, err := op.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			reply, err := c.Reload(ctx, reason)
			if op.json && reply != nil {
				return errors.Join(writeJSON(cmd.OutOrStdout(), reply), err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: %d identities, %d policies in force\n", reply.Identities, reply.Policies)
			return nil
		},
	}
	op.addFlags(cmd.Flags(), 30*time.Second)
	cmd.Flags().StringVar(&reason, "reason", "", "why (logged by the gateway)")
	op.require(cmd)
	return cmd
}
