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

// newApproveCmd returns `tollgate approve` (approve true) or `tollgate
// reject`: an operator's signed answer to a hop a policy held for approval.
func newApproveCmd(approve bool) *cobra.Command {
	var url, keyPath, id, note, prefix string
	var timeout time.Duration
	use, short := "approve <run> <hop>", "Release a hop held for approval: it is delivered to its target"
	if !approve {
		use, short = "reject <run> <hop>", "Reject a hop held for approval: its caller is told why (--note)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

A policy annotated @approval("required") holds the hops it permits until an
operator answers (the approval alert on tg.alert.<run>.approval.<hop> names
the run and the hop; tollgate runs list shows runs awaiting approval). The
request is signed with the operator's key; with @approvers("group") only an
operator of that group (operators[].groups in the gateway config) may answer.
A hop not answered before its deadline (enforcer.approval_timeout) is
rejected by the gateway.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, hop := args[0], args[1]
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
			answer, verb := c.Approve, "approved"
			if !approve {
				answer, verb = c.Reject, "rejected"
			}
			reply, err := answer(ctx, run, hop, note)
			if err != nil {
				return err
			}
			if reply.Error != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "hop %s of run %s was %s\n", hop, run, reply.Error)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "hop %s of run %s %s (ledger seq %d)\n", hop, run, verb, reply.LedgerSeq)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "nats", "nats://"+gateway.DefaultListen, "NATS URL of the gateway")
	cmd.Flags().StringVar(&keyPath, "key", "", "the operator's nkey seed file (tollgate agent add <id> --type operator)")
	cmd.Flags().StringVar(&id, "operator", "", "the operator's id as registered in the gateway config")
	cmd.Flags().StringVar(&note, "note", "", "why (recorded in the ledger; a rejection needs one, its caller is told it)")
	cmd.Flags().StringVar(&prefix, "subject-prefix", broker.DefaultPrefix, "the gateway's subject prefix")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the gateway")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("operator")
	return cmd
}
