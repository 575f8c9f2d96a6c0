package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/notify"
	"github.com/tollgate/tollgate/schemas"
)

func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Follow the gateway's alerts, and list the ones no sink took (dead letters)",
		Long: `Alerts are published on tg.alert.<run> when a run is halted and on
tg.alert.<run>.approval.<hop> when a hop waits for a human. serve delivers them
to the sinks of its alerts section (docs/operations.md); what a sink still
refused after every retry is kept in the DEADLETTER stream.

Both commands read a running gateway with an operator's key: --nats URL
--creds FILE, or --config FILE --creds FILE.`,
	}
	cmd.AddCommand(newAlertsTailCmd(), newAlertsDeadCmd())
	return cmd
}

func newAlertsTailCmd() *cobra.Command {
	var src sourceFlags
	var run string
	var count int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow alerts live (Ctrl-C stops)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if run != "" && !schemas.ValidID(run) {
				return fmt.Errorf("--run %q is not a run id", run)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), src.timeout)
			defer cancel()
			bus, err := src.dial(ctx)
			if err != nil {
				return err
			}
			defer bus.Close()
			ch := make(chan *nats.Msg, 256)
			subjects := []string{bus.Subjects.AlertAll()}
			if run != "" {
				subjects = []string{bus.Subjects.Alert(run), bus.Subjects.Alert(run) + ".>"}
			}
			for _, s := range subjects {
				sub, err := bus.Conn.ChanSubscribe(s, ch)
				if err != nil {
					return fmt.Errorf("follow %s: %w", s, err)
				}
				defer func() { _ = sub.Unsubscribe() }()
			}
			if err := bus.Conn.FlushWithContext(ctx); err != nil {
				return fmt.Errorf("follow alerts: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "following alerts at %s (Ctrl-C stops)\n", bus.Where)
			for seen := 0; count == 0 || seen < count; {
				select {
				case <-ctx.Done():
					if errors.Is(ctx.Err(), context.DeadlineExceeded) && count == 0 {
						return nil
					}
					return ctx.Err()
				case m := <-ch:
					seen++
					if asJSON {
						fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(m.Data)))
						continue
					}
					var a schemas.Alert
					if err := json.Unmarshal(m.Data, &a); err != nil {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: unreadable alert: %v\n", m.Subject, err)
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", a.At.Format(time.RFC3339), stripEmoji(notify.Text(&a)))
				}
			}
			return nil
		},
	}
	src.addFlags(cmd.Flags())
	cmd.Flags().Lookup("timeout").DefValue = "24h"
	_ = cmd.Flags().Set("timeout", "24h")
	cmd.Flags().StringVar(&run, "run", "", "only this run's alerts")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many alerts (0: follow until interrupted)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each alert as one line of JSON, as published")
	return cmd
}

// stripEmoji drops the Slack emoji code a text line starts with.
func stripEmoji(s string) string {
	if strings.HasPrefix(s, ":") {
		if i := strings.Index(s[1:], ": "); i >= 0 {
			return s[i+3:]
		}
	}
	return s
}

// deadLetter is one alert a sink refused after every retry.
type deadLetter struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Sink    string          `json:"sink"`
	Reason  string          `json:"reason"`
	RunID   string          `json:"run_id,omitempty"`
	Kind    string          `json:"kind,omitempty"`
	Payload json.RawMessage `json:"alert"`
}

func newAlertsDeadCmd() *cobra.Command {
	var src sourceFlags
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "List the alerts a sink refused after every retry (the dead letters)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), src.timeout)
			defer cancel()
			bus, err := src.dial(ctx)
			if err != nil {
				return err
			}
			defer bus.Close()
			letters, err := readDeadLetters(ctx, bus.JetStream, bus.Subjects, limit)
			if err != nil {
				return err
			}
			if asJSON {
				if letters == nil {
					letters = []deadLetter{}
				}
				return writeJSON(cmd.OutOrStdout(), letters)
			}
			if len(letters) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no dead letters: every alert reached its sinks")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tSINK\tRUN\tKIND\tREASON")
			for _, l := range letters {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", l.Seq, l.Time.Format(time.RFC3339), l.Sink, orDash(l.RunID), orDash(l.Kind), l.Reason)
			}
			return tw.Flush()
		},
	}
	src.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many, the latest")
	return cmd
}

func readDeadLetters(ctx context.Context, js jetstream.JetStream, subj broker.Subjects, limit int) ([]deadLetter, error) {
	name := subj.Stream(broker.StreamDeadLetter)
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("dead letters (%s stream): %w", name, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return nil, nil
	}
	first := st.FirstSeq
	if limit > 0 && st.LastSeq-first+1 > uint64(limit) {
		first = st.LastSeq - uint64(limit) + 1
	}
	prefix := strings.TrimSuffix(subj.DeadLetterAlerts("x"), "x")
	var out []deadLetter
	for seq := first; seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		l := deadLetter{Seq: seq, Time: m.Time, Sink: strings.TrimPrefix(m.Subject, prefix), Reason: m.Header.Get("reason_poisoned"), Payload: m.Data}
		var a schemas.Alert
		if json.Unmarshal(m.Data, &a) == nil {
			l.RunID, l.Kind = a.RunID, a.Kind
		} else {
			l.Payload, _ = json.Marshal(string(m.Data))
		}
		out = append(out, l)
	}
	return out, nil
}
