package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// newApproveCmd returns `tollgate approve` (approve true) or `tollgate
// reject`: an operator's signed answer to a hop a policy held for approval.
func newApproveCmd(approve bool) *cobra.Command {
	var op opFlags
	var note string
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
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeRuns,
		RunE: func(cmd *cobra.Command, args []string) error {
			run, hop := args[0], args[1]
			ctx, cancel := context.WithTimeout(cmd.Context(), op.timeout)
			defer cancel()
			c, err := op.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			answer, verb := c.Approve, "approved"
			if !approve {
				answer, verb = c.Reject, "rejected"
			}
			reply, err := answer(ctx, run, hop, note)
			if op.json && reply != nil {
				return errors.Join(writeJSON(cmd.OutOrStdout(), reply), err)
			}
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
	op.addFlags(cmd.Flags(), 10*time.Second)
	cmd.Flags().StringVar(&note, "note", "", "why (recorded in the ledger; a rejection needs one, its caller is told it)")
	op.require(cmd)
	return cmd
}
