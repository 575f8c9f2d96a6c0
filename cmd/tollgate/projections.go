package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/projections"
)

// envClickHouseDSN is where --clickhouse takes its default from.
const envClickHouseDSN = "TOLLGATE_CLICKHOUSE_DSN"

func newProjectionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projections",
		Short: "Project the run ledger into ClickHouse: migrate, run, rebuild, status",
		Long: `ClickHouse is the ledger's analytical read model: raw events, one row per hop,
runs, limit breaches, and views for call-graph edges, cost per agent, workflow,
team and principal, and loop signals (docs/projections.md). It can be rebuilt
from the ledger at any time.

The ledger is read from --data (the data folder of an embedded gateway, such
as one left by 'tollgate demo --data DIR', opened in-process while no gateway
holds it), --nats and --creds (a NATS server and an nkey seed allowed to read
LEDGER and manage its consumers), or --config (a gateway config naming one of
them). ClickHouse is --clickhouse (default $TOLLGATE_CLICKHOUSE_DSN, else the
config's clickhouse section).`,
	}
	cmd.AddCommand(newProjectionsMigrateCmd(), newProjectionsRunCmd(), newProjectionsRebuildCmd(), newProjectionsStatusCmd())
	return cmd
}

// chFlags say where ClickHouse is.
type chFlags struct {
	dsn, database string
}

func (f *chFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.dsn, "clickhouse", os.Getenv(envClickHouseDSN), "ClickHouse DSN, native protocol (default $"+envClickHouseDSN+")")
	fs.StringVar(&f.database, "database", "", "ClickHouse database (default: the DSN's, else tollgate)")
}

func (f *chFlags) config() (projections.Config, error) {
	return f.configFrom(nil)
}

// configFrom is config, falling back on the clickhouse section of the
// gateway config src names (--config), if any.
func (f *chFlags) configFrom(src *sourceFlags) (projections.Config, error) {
	var gw *gateway.Config
	if f.dsn == "" && src != nil {
		var err error
		if gw, err = src.loadConfig(); err != nil {
			return projections.Config{}, err
		}
	}
	cfg, err := gateway.ProjectionsConfig(gw, f.dsn, f.database)
	if errors.Is(err, gateway.ErrNoClickHouse) {
		return cfg, fmt.Errorf("no ClickHouse: pass --clickhouse, set $%s, or give a --config with a clickhouse dsn", envClickHouseDSN)
	}
	return cfg, err
}

func newProjectionsMigrateCmd() *cobra.Command {
	var ch chFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the projection's database, tables and views, or bring them up to date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := ch.config()
			if err != nil {
				return err
			}
			applied, err := projections.Migrate(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			all, err := projections.Migrations()
			if err != nil {
				return err
			}
			db := cfg.DatabaseName()
			if asJSON {
				type mig struct {
					Version int    `json:"version"`
					Name    string `json:"name"`
				}
				out := struct {
					Database string `json:"database"`
					Applied  []mig  `json:"applied"`
					Version  int    `json:"version"`
				}{Database: db, Applied: []mig{}, Version: all[len(all)-1].Version}
				for _, m := range applied {
					out.Applied = append(out.Applied, mig{m.Version, m.Name})
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			if len(applied) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "database %s is up to date (migration %d)\n", db, all[len(all)-1].Version)
				return nil
			}
			for _, m := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "database %s: applied %04d_%s\n", db, m.Version, m.Name)
			}
			return nil
		},
	}
	ch.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the migrations applied as JSON")
	return cmd
}

func newProjectionsRunCmd() *cobra.Command {
	var ch chFlags
	var src sourceFlags
	var batch int
	var flush, every time.Duration
	var consumer string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the projector on its own until interrupted (serve runs it when a DSN is configured)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := ch.configFrom(&src)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			setup, cancel := context.WithTimeout(ctx, src.timeout)
			defer cancel()
			l, err := src.open(setup)
			if err != nil {
				return err
			}
			defer l.Close()
			log, err := logger(cmd)
			if err != nil {
				return err
			}
			if batch != 0 {
				cfg.BatchSize = batch
			}
			if flush != 0 {
				cfg.FlushInterval = flush
			}
			if consumer != "" {
				cfg.Consumer = consumer
			}
			cfg.Logger, cfg.LogEvery = log, every
			p, err := projections.New(l.Ledger, cfg)
			if err != nil {
				return err
			}
			if err := p.Start(setup); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "projecting %s into ClickHouse database %s; Ctrl-C stops\n", l.StreamName(), cfg.DatabaseName())
			<-ctx.Done()
			stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
			defer stop()
			return p.Stop(stopCtx)
		},
	}
	ch.register(cmd.Flags())
	src.addFlags(cmd.Flags())
	cmd.Flags().IntVar(&batch, "batch-size", 0, "events per batch of inserts (default 20000)")
	cmd.Flags().DurationVar(&flush, "flush-interval", 0, "longest an event waits for its batch (default 1s)")
	cmd.Flags().StringVar(&consumer, "consumer", broker.ProjectorConsumer, "durable consumer name")
	cmd.Flags().DurationVar(&every, "stats-every", 30*time.Second, "how often to log the projector's counters and lag")
	return cmd
}

func newProjectionsRebuildCmd() *cobra.Command {
	var ch chFlags
	var src sourceFlags
	var asJSON, keepOld bool
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Re-project the whole ledger into fresh tables and swap them in",
		Long: `Re-project every ledger event, from the first, into fresh tables in
<database>_rebuild, swap them in for the live ones (a running projector keeps
writing, into the new tables after the swap), project the events recorded
meanwhile, and check that the rebuilt events match the ledger's count.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := ch.configFrom(&src)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), src.timeout)
			defer cancel()
			l, err := src.open(ctx)
			if err != nil {
				return err
			}
			defer l.Close()
			bar := projections.NewProgressPrinter(cmd.ErrOrStderr(), isTerminal(cmd.ErrOrStderr()))
			res, err := projections.Rebuild(ctx, l.Ledger, cfg, projections.RebuildOptions{Progress: bar.Update, KeepOld: keepOld})
			bar.Finish()
			if res == nil {
				return err
			}
			if asJSON {
				if jerr := writeJSON(cmd.OutOrStdout(), res); jerr != nil {
					return errors.Join(err, jerr)
				}
				return err
			}
			if werr := res.WriteText(cmd.OutOrStdout(), err == nil); werr != nil {
				return errors.Join(err, werr)
			}
			return err
		},
	}
	ch.register(cmd.Flags())
	src.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&keepOld, "keep-old", false, "keep the replaced tables in <database>_old")
	return cmd
}

func newProjectionsStatusCmd() *cobra.Command {
	var ch chFlags
	var src sourceFlags
	var asJSON bool
	var consumer string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the projection: schema, row counts and, with a bus, the projector's lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := ch.configFrom(&src)
			if err != nil {
				return err
			}
			if consumer != "" {
				cfg.Consumer = consumer
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), src.timeout)
			defer cancel()
			var led *ledger.Ledger
			if src.given() {
				l, err := src.open(ctx)
				if err != nil {
					return err
				}
				defer l.Close()
				led = l.Ledger
			}
			st, err := projections.GetStatus(ctx, led, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			return st.WriteText(cmd.OutOrStdout())
		},
	}
	ch.register(cmd.Flags())
	src.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().StringVar(&consumer, "consumer", broker.ProjectorConsumer, "durable consumer name")
	return cmd
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
