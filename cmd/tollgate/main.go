// Command tollgate is the Tollgate agent gateway: it runs the gateway
// (serve), its demo, and the tools around it (agents, policies).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
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
		var code exitCoder
		if errors.As(err, &code) {
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
		Version:       version(),
		Short:         "Tollgate governs agent-to-agent traffic: identity, policy, limits and a hash-chained run ledger",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().Bool("debug", false, "log debug detail to stderr (same as --log-level debug)")
	root.PersistentFlags().String("log-format", "text", "log format: text or json (one JSON object a line)")
	root.PersistentFlags().String("log-level", "info", "least level logged: debug (every denial), info, warn or error")
	root.AddCommand(newServeCmd(), newDemoCmd(), newAgentCmd(), newPolicyCmd(), newProjectionsCmd(), newReportCmd())
	root.AddCommand(newRunCmd(), newApproveCmd(true), newApproveCmd(false))
	root.AddCommand(newReplayCmd(), newRunsCmd(), newNATSCmd(), newBridgeCmd(), newQuotaCmd(), newConsoleCmd())
	root.AddCommand(newReloadCmd(), newConfigCmd(), newAlertsCmd())
	return root
}

// logger is the slog logger --log-format, --log-level and --debug ask for,
// writing to standard error.
func logger(cmd *cobra.Command) (*slog.Logger, error) {
	var level slog.Level
	name, _ := cmd.Flags().GetString("log-level")
	if err := level.UnmarshalText([]byte(name)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", name)
	}
	if debug, _ := cmd.Flags().GetBool("debug"); debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format, _ := cmd.Flags().GetString("log-format"); format {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
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

// version is the module version the binary was built from, with its VCS
// revision when the build recorded one.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " (" + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += ", modified"
			}
		}
	}
	if strings.Contains(v, "(") {
		v += ")"
	}
	return v
}
