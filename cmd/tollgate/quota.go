package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/enforcer/quota"
)

func newQuotaCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Short: "Spend quotas across runs (docs/limits.md)"}
	cmd.AddCommand(newQuotaStatusCmd())
	return cmd
}

type quotaStatusOptions struct {
	src      sourceFlags
	operator string
	json     bool
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

As an operator: --key (or --creds) OPERATOR.nk, with --nats or --config to
find the gateway, sends a signed request on tg.ctl.quota, checked against
the operator's registered key like a halt; the running gateway reads the
quotas from its KV bucket and answers. --operator ID names the operator
(by default the server says whose key it is). Otherwise the bucket is read
directly, which needs the gateway account: a data folder (--data) or the
gateway's own credentials (--nats, --creds); --config then says which
quotas there are.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return quotaStatus(cmd.Context(), cmd.OutOrStdout(), &o)
		},
	}
	o.src.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.operator, "operator", "", "ask the running gateway as this operator (registered in its config), signing with --key (default: the key's owner, when it is an operator's)")
	cmd.Flags().StringVar(&o.src.creds, "key", "", "same as --creds")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the quotas as a JSON array")
	return cmd
}

func quotaStatus(ctx context.Context, stdout io.Writer, o *quotaStatusOptions) error {
	cfg, err := o.src.loadConfig()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.src.timeout)
	defer cancel()
	if o.operator == "" && o.src.data == "" && o.src.creds != "" {
		// An operator's key without --operator: the server says whose it
		// is, and the operator asks the gateway.
		if bus, err := o.src.dial(ctx); err == nil {
			if bus.Owner.Kind == broker.OwnerOperator {
				o.operator = bus.Owner.ID
			}
			bus.Close()
		}
	}
	var usage []quota.Usage
	zone := time.UTC
	if o.operator != "" {
		if usage, err = operatorQuotaStatus(ctx, o); err != nil {
			return err
		}
		if cfg != nil {
			zone = cfg.EnforcerConfig().LimitSet().Zone()
		}
	} else {
		if cfg == nil {
			return errors.New("quota status needs the gateway config (--config FILE): it defines the quotas; or ask the running gateway as an operator (--operator ID --key FILE)")
		}
		l, err := o.src.open(ctx)
		if err != nil {
			return err
		}
		defer l.Close()
		store, err := quota.Open(ctx, l.JS, l.Subjects)
		if err != nil {
			return fmt.Errorf("%w at %s (read the quotas with --data or the gateway's credentials, or as an operator: --operator ID --key FILE)", err, l.Where)
		}
		set := cfg.EnforcerConfig().LimitSet()
		zone = set.Zone()
		if usage, err = enforcer.QuotaStatus(ctx, store, set, time.Now()); err != nil {
			return err
		}
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
		window, ends := u.Window, u.End.In(zone).Format("2006-01-02 15:04 MST")
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

// operatorQuotaStatus asks the running gateway for the quotas as the
// operator o names, with a signed request (operator.Client.QuotaStatus).
func operatorQuotaStatus(ctx context.Context, o *quotaStatusOptions) ([]quota.Usage, error) {
	if o.src.creds == "" {
		return nil, errors.New("quota status --operator needs the operator's key (--key FILE)")
	}
	if o.src.data != "" {
		return nil, errors.New("give either --data or --operator, not both")
	}
	op := opFlags{url: o.src.url, config: o.src.config, key: o.src.creds, id: o.operator, prefix: o.src.subjectPrefix}
	c, err := op.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	reply, err := c.QuotaStatus(ctx)
	if err != nil {
		return nil, err
	}
	var usage []quota.Usage
	if err := json.Unmarshal(reply.Quotas, &usage); err != nil {
		return nil, fmt.Errorf("quota status: the gateway's answer does not decode: %w", err)
	}
	return usage, nil
}
