package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/schemas"
)

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "run", Short: "Act on a run (operators)"}
	var url, keyPath, operator, reason, prefix string
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
			if reason == "" {
				return errors.New("--reason is required: the ledger and the alert record why")
			}
			kp, err := broker.LoadSeed(keyPath)
			if err != nil {
				return err
			}
			subjects, err := broker.NewSubjects(prefix, "")
			if err != nil {
				return err
			}
			nc, err := broker.Connect(broker.ConnectConfig{URL: url, Key: kp, InboxPrefix: broker.InboxPrefix(operator),
				Name: "tollgate run halt", Options: []nats.Option{nats.MaxReconnects(2)}})
			if err != nil {
				return err
			}
			defer nc.Close()
			req := schemas.HaltRequest{Version: schemas.Version, RunID: run, By: operator, Reason: reason, SentAt: time.Now().UTC()}
			body, err := schemas.Encode(&req)
			if err != nil {
				return err
			}
			signed, _, err := schemas.SignObject(body, schemas.ControlSigningContext, kp.Sign)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			m, err := nc.RequestWithContext(ctx, subjects.CtlHalt(run), signed)
			if err != nil {
				return fmt.Errorf("halt %s: no answer from a gateway (%w)", run, err)
			}
			var reply schemas.HaltReply
			if err := json.Unmarshal(m.Data, &reply); err != nil {
				return fmt.Errorf("halt %s: unreadable answer: %w", run, err)
			}
			switch {
			case reply.Error != "" && !reply.OK:
				return fmt.Errorf("halt %s refused: %s", run, reply.Error)
			case reply.Already:
				fmt.Fprintf(cmd.OutOrStdout(), "run %s was already halted\n", run)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "run %s halted (ledger seq %d); cancelled %d open hops\n", run, reply.LedgerSeq, len(reply.OpenHops))
			}
			return nil
		},
	}
	halt.Flags().StringVar(&url, "nats", "nats://"+gateway.DefaultListen, "NATS URL of the gateway")
	halt.Flags().StringVar(&keyPath, "key", "", "the operator's nkey seed file (tollgate agent add <id> --type operator)")
	halt.Flags().StringVar(&operator, "operator", "", "the operator's id as registered in the gateway config")
	halt.Flags().StringVar(&reason, "reason", "", "why (recorded in the ledger and the alert)")
	halt.Flags().StringVar(&prefix, "subject-prefix", broker.DefaultPrefix, "the gateway's subject prefix")
	halt.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the gateway")
	_ = halt.MarkFlagRequired("key")
	_ = halt.MarkFlagRequired("operator")
	cmd.AddCommand(halt)
	return cmd
}
