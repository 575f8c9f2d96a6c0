package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/agent"
)

func newBridgeCmd() *cobra.Command {
	var id, seed, url, natsURL, prefix string
	cmd := &cobra.Command{
		Use:   "bridge",
		Short: "Put an existing A2A server (v1.0 or v0.3) behind the gateway as a registered agent",
		Long: `Connect to the gateway's NATS as the agent (--agent, with its key seed
--seed), read the A2A server's card at --url, and serve every task the
gateway delivers to the agent by calling the server: the reply carries the
server's result and the usage it reports (metadata "tollgate.usage"); a
cancel of the hop cancels the server's task. The server's own onward calls
go through the gateway's ingress with the agent's token (tollgate agent
token <agent>) and name the task they serve (metadata "tollgate.parent_task",
from "tollgate.task" on the message the bridge sends).

serve runs the bridges its config lists itself (bridges:); this command is
for a server the gateway cannot reach, run beside it. See docs/a2a.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kp, err := broker.LoadSeed(seed)
			if err != nil {
				return err
			}
			subj, err := broker.NewSubjects(prefix, "")
			if err != nil {
				return err
			}
			log, err := logger(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			b, err := a2ahttp.StartBridge(ctx, a2ahttp.BridgeConfig{
				Agent:     agent.Config{ID: id, Key: kp, URL: natsURL, Subjects: &subj, Logger: log},
				ServerURL: url, Logger: log,
			})
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "bridging agent %s to %s (%s); Ctrl-C stops\n", id, url, b.Card().Name)
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "agent", "", "the registered agent id the server answers as (required)")
	cmd.Flags().StringVar(&seed, "seed", "", "the agent's nkey seed file (required)")
	cmd.Flags().StringVar(&url, "url", "", "the A2A server's base URL (required)")
	cmd.Flags().StringVar(&natsURL, "nats", "nats://127.0.0.1:4222", "the gateway's NATS URL")
	cmd.Flags().StringVar(&prefix, "subject-prefix", broker.DefaultPrefix, "the gateway's nats.subject_prefix")
	for _, f := range []string{"agent", "seed", "url"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
