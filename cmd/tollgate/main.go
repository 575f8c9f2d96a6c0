// Command tollgate is the Tollgate agent gateway: it runs the gateway
// (serve), its demo, and the tools around it (agents, policies).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tollgate:", err)
		if code, ok := err.(exitCoder); ok {
			os.Exit(code.ExitCode())
		}
		os.Exit(1)
	}
}

// exitCoder lets a command choose its exit status.
type exitCoder interface{ ExitCode() int }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "Tollgate governs agent-to-agent traffic: identity, policy, limits and a hash-chained run ledger",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().Bool("debug", false, "log debug detail to stderr")
	root.AddCommand(newServeCmd(), newDemoCmd(), newAgentCmd(), newPolicyCmd(), newProjectionsCmd(), newReportCmd())
	root.AddCommand(newRunCmd(), newApproveCmd(true), newApproveCmd(false))
	root.AddCommand(newReplayCmd(), newRunsCmd(), newNATSCmd(), newBridgeCmd(), newQuotaCmd())
	return root
}

func logger(cmd *cobra.Command) *slog.Logger {
	level := slog.LevelInfo
	if debug, _ := cmd.Flags().GetBool("debug"); debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
}

// parseSince reads --since: empty, a duration back from now (with a "d"
// suffix for days), a date, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (24h, 7d) or a date (2026-01-31, 2026-01-31T15:04:05Z)", s)
}

// orDash shows an empty table cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
