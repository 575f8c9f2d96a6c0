// Command tollgate is the Tollgate agent gateway: it runs the gateway
// (serve), its demo, and the tools around it (agents, policies).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

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
	root.AddCommand(newRunCmd())
	root.AddCommand(newReplayCmd(), newRunsCmd())
	return root
}

func logger(cmd *cobra.Command) *slog.Logger {
	level := slog.LevelInfo
	if debug, _ := cmd.Flags().GetBool("debug"); debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
}
