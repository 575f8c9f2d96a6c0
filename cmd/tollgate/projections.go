package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
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
func (f *chFlags) configFrom(src *ledgerSource) (projections.Config, error) {
	cfg := projections.Config{DSN: f.dsn, Database: f.database}
	if f.dsn == "" && src != nil {
		gw, err := src.loadConfig()
		if err != nil {
			return cfg, err
		}
		if gw != nil && gw.ClickHouse.DSN != "" {
			cfg = gw.ClickHouse.Projections()
			if f.database != "" {
				cfg.Database = f.database
			}
		}
	}
	if cfg.DSN == "" {
		return cfg, fmt.Errorf("no ClickHouse: pass --clickhouse, set $%s, or give a --config with a clickhouse dsn", envClickHouseDSN)
	}
	return cfg, cfg.Validate()
}

func newProjectionsMigrateCmd() *cobra.Command {
	var ch chFlags
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
	return cmd
}

func newProjectionsRunCmd() *cobra.Command {
	var ch chFlags
	var src ledgerSource
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
			log := logger(cmd)
			if batch != 0 {
				cfg.BatchSize = batch
			}
			if flush != 0 {
				cfg.FlushInterval = flush
			}
			cfg.Consumer, cfg.Logger, cfg.LogEvery = consumer, log, every
			p, err := projections.New(l.js, l.subjects, cfg)
			if err != nil {
				return err
			}
			if err := p.Start(setup); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "projecting %s into ClickHouse database %s; Ctrl-C stops\n", l.name, cfg.DatabaseName())
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
	cmd.Flags().StringVar(&consumer, "consumer", projections.DefaultConsumer, "durable consumer name")
	cmd.Flags().DurationVar(&every, "stats-every", 30*time.Second, "how often to log the projector's counters and lag")
	return cmd
}

func newProjectionsRebuildCmd() *cobra.Command {
	var ch chFlags
	var src ledgerSource
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
			bar := newProgressBar(cmd.ErrOrStderr())
			res, err := projections.Rebuild(ctx, l.js, l.subjects, cfg, projections.RebuildOptions{Progress: bar.update, KeepOld: keepOld})
			bar.finish()
			if res == nil {
				return err
			}
			if asJSON {
				if jerr := writeJSON(cmd.OutOrStdout(), res); jerr != nil {
					return errors.Join(err, jerr)
				}
				return err
			}
			verdict := "matches the ledger"
			if err != nil {
				verdict = "DOES NOT match the ledger"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rebuilt %s in %s: %d ledger events, %d events projected (%d skipped), %d hops, %d runs, %d breaches; %d caught up after the swap; %s\n",
				res.Database, res.Duration.Round(time.Millisecond), res.LedgerEvents, res.Events, res.Skipped, res.Hops, res.Runs,
				res.Breaches, res.CaughtUp, verdict)
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
	var src ledgerSource
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
			cfg.Consumer = consumer
			ctx, cancel := context.WithTimeout(cmd.Context(), src.timeout)
			defer cancel()
			var js jetstream.JetStream
			subjects := broker.DefaultSubjects()
			if src.data != "" || src.url != "" || src.config != "" {
				l, err := src.open(ctx)
				if err != nil {
					return err
				}
				defer l.Close()
				js, subjects = l.js, l.subjects
			}
			st, err := projections.GetStatus(ctx, js, subjects, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			return writeStatus(cmd.OutOrStdout(), st)
		},
	}
	ch.register(cmd.Flags())
	src.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().StringVar(&consumer, "consumer", projections.DefaultConsumer, "durable consumer name")
	return cmd
}

func writeStatus(w io.Writer, st *projections.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "database\t%s (ClickHouse %s)\n", st.Database, st.ServerVersion)
	fmt.Fprintf(tw, "schema\tmigration %d of %d\n", st.SchemaVersion, st.LatestSchema)
	fmt.Fprintf(tw, "rows\t%d events, %d hops, %d runs, %d breaches\n", st.Events, st.Hops, st.Runs, st.Breaches)
	fmt.Fprintf(tw, "projected up to\tstream seq %d\n", st.ProjectedStreamSeq)
	if l := st.Lag; l != nil {
		state := "caught up"
		if l.Events() > 0 {
			state = fmt.Sprintf("%d events behind (%d pending, %d awaiting ack), oldest %s old", l.Events(), l.Pending, l.AckPending, l.Behind.Round(time.Millisecond))
		}
		if !l.Exists {
			state = fmt.Sprintf("no projector has run as %q yet; %d events to project", l.Consumer, l.Events())
		}
		fmt.Fprintf(tw, "ledger\t%d events, last stream seq %d\n", l.StreamEvents, l.StreamLastSeq)
		fmt.Fprintf(tw, "lag\t%s\n", state)
	} else {
		fmt.Fprintf(tw, "lag\tunknown (pass --data, --nats or --config to ask the bus)\n")
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progressBar draws rebuild progress on a terminal, and prints a line now
// and then when the output is not one (CI logs).
type progressBar struct {
	w        io.Writer
	tty      bool
	pass     int
	lastPct  int
	lastLine time.Time
	drawn    bool
}

func newProgressBar(w io.Writer) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: w, tty: tty, lastPct: -1}
}

func (p *progressBar) update(pr projections.RebuildProgress) {
	pct := 100
	if pr.Total > 0 {
		pct = int(pr.Done * 100 / pr.Total)
	}
	what := "re-projecting the ledger"
	if pr.Pass == 2 {
		what = "catching up after the swap"
	}
	if p.tty {
		if p.drawn && pr.Pass != p.pass {
			fmt.Fprintln(p.w)
		}
		p.pass = pr.Pass
		const width = 30
		fill := pct * width / 100
		fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %d/%d events ", what, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), pct, pr.Done, pr.Total)
		p.drawn = true
		return
	}
	if pr.Pass != p.pass || pct >= p.lastPct+10 || time.Since(p.lastLine) > 5*time.Second || pr.Done == pr.Total {
		if pr.Pass == p.pass && pct == p.lastPct {
			return
		}
		fmt.Fprintf(p.w, "%s: %d%% (%d/%d events)\n", what, pct, pr.Done, pr.Total)
		p.pass, p.lastPct, p.lastLine = pr.Pass, pct, time.Now()
	}
}

func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// writeDemoCost waits until the gateway's projector has written every
// ledger event, then prints the run's cost report read from ClickHouse.
func writeDemoCost(ctx context.Context, w io.Writer, g *gateway.Gateway, run string) error {
	for {
		lag, err := g.Projector().Lag(ctx)
		if err != nil {
			return err
		}
		if lag.Events() == 0 && lag.AckFloor >= lag.StreamLastSeq {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("projection of run %s: %w", run, ctx.Err())
		case <-g.Projector().Done():
			return fmt.Errorf("projector stopped: %w", g.Projector().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	r, err := projections.NewReader(ctx, g.Config().ClickHouse.Projections())
	if err != nil {
		return err
	}
	defer r.Close()
	out := map[projections.Dimension][]projections.CostRow{}
	for _, d := range projections.Dimensions {
		if out[d], err = r.Cost(ctx, d, projections.Filter{RunID: run}); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nFrom ClickHouse (database %s), run %s:\n\n", g.Config().ClickHouse.Projections().DatabaseName(), run)
	return writeCost(w, projections.Dimensions, out)
}
