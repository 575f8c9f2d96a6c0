package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "run", Short: "Act on a run (operators)"}
	var url, keyPath, id, reason, prefix string
	var timeout time.Duration
	halt := &cobra.Command{
		Use:   "halt <run>",
		Short: "Kill switch: halt a run, cancel its open hops and alert",
		Long: `Halt a run as an operator. The request is signed with the operator's key and
checked by the gateway against the operators registered in its config; NATS
permissions let only operators publish control commands. Every later hop of
the run is denied (reason halted), its open hops are cancelled, and an alert
is published on tg.alert.<run>.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run := args[0]
			kp, err := broker.LoadSeed(keyPath)
			if err != nil {
				return err
			}
			subjects, err := broker.NewSubjects(prefix, "")
			if err != nil {
				return err
			}
			c, err := operator.Connect(operator.Config{ID: id, Key: kp, URL: url, Subjects: &subjects})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			reply, err := c.Halt(ctx, run, reason)
			if err != nil {
				return err
			}
			if reply.Already {
				fmt.Fprintf(cmd.OutOrStdout(), "run %s was already halted\n", run)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "run %s halted (ledger seq %d); cancelled %d open hops\n", run, reply.LedgerSeq, len(reply.OpenHops))
			}
			return nil
		},
	}
	halt.Flags().StringVar(&url, "nats", "nats://"+gateway.DefaultListen, "NATS URL of the gateway")
	halt.Flags().StringVar(&keyPath, "key", "", "the operator's nkey seed file (tollgate agent add <id> --type operator)")
	halt.Flags().StringVar(&id, "operator", "", "the operator's id as registered in the gateway config")
	halt.Flags().StringVar(&reason, "reason", "", "why (recorded in the ledger and the alert)")
	halt.Flags().StringVar(&prefix, "subject-prefix", broker.DefaultPrefix, "the gateway's subject prefix")
	halt.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the gateway")
	_ = halt.MarkFlagRequired("key")
	_ = halt.MarkFlagRequired("operator")
	cmd.AddCommand(halt)
	return cmd
}
