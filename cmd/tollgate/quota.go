package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/quota"
)

func newQuotaCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Short: "Spend quotas across runs (docs/limits.md)"}
	cmd.AddCommand(newQuotaStatusCmd())
	return cmd
}

type quotaStatusOptions struct {
	src  sourceFlags
	json bool
}

func newQuotaStatusCmd() *cobra.Command {
	var o quotaStatusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each quota's spend in its current window, fleet-wide",
		Long: `Show the spend quotas of a gateway config (--config) as every enforcer
instance shares them: for each quota and each scope value it has counted
(agent, team, workflow, principal or environment), the current window, what
replies settled, what open hops reserve, and the share of the bound used.

The quotas live in the gateway account's KV bucket: read them from a data
folder (--data) or with the gateway's own credentials (--nats, --creds).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return quotaStatus(cmd.Context(), cmd.OutOrStdout(), &o)
		},
	}
	o.src.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.json, "json", false, "print the quotas as a JSON array")
	return cmd
}

func quotaStatus(ctx context.Context, stdout io.Writer, o *quotaStatusOptions) error {
	cfg, err := o.src.loadConfig()
	if err != nil {
		return err
	}
	if cfg == nil {
		return errors.New("quota status needs the gateway config (--config FILE): it defines the quotas")
	}
	ctx, cancel := context.WithTimeout(ctx, o.src.timeout)
	defer cancel()
	l, err := o.src.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	store, err := quota.Open(ctx, l.JS, l.Subjects)
	if err != nil {
		return fmt.Errorf("%w at %s (read the quotas with --data or the gateway's credentials)", err, l.Where)
	}
	ec := cfg.EnforcerConfig()
	set := ec.LimitSet()
	usage, err := enforcer.QuotaStatus(ctx, store, set, time.Now())
	if err != nil {
		return err
	}
	if o.json {
		if usage == nil {
			usage = []quota.Usage{}
		}
		return writeJSON(stdout, usage)
	}
	if len(usage) == 0 {
		fmt.Fprintln(stdout, "no quotas configured")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUOTA\tSCOPE\tVALUE\tWINDOW\tENDS\tTOKENS (settled+reserved/max)\tCOST (settled+reserved/max)\tOPEN HOPS\tUSED")
	for _, u := range usage {
		window, ends := u.Window, u.End.In(set.Zone()).Format("2006-01-02 15:04 MST")
		if u.Window == "rolling" {
			window, ends = "rolling "+u.End.Sub(u.Start).String(), "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d+%d/%s\t$%.4f+$%.4f/%s\t%d\t%.1f%%\n", u.Quota, u.Scope, u.Value, window, ends,
			u.Settled.Tokens, u.Reserved.Tokens, bound(float64(u.MaxTokens), "%.0f"),
			u.Settled.CostUSD, u.Reserved.CostUSD, bound(u.MaxCostUSD, "$%g"), u.Held, u.Percent)
	}
	return tw.Flush()
}

func bound(v float64, format string) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}
