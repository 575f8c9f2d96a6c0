package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/ledger/runtree"
)

// opFlags are the flags of every operator command (run halt, approve,
// reject, reload): who the operator is, with which key, and where the
// gateway is (--nats, or the --config that names it).
type opFlags struct {
	url, config, key, id, prefix string
	timeout                      time.Duration
	json                         bool
}

func (o *opFlags) addFlags(fs *pflag.FlagSet, timeout time.Duration) {
	fs.StringVar(&o.url, "nats", "", "NATS URL of the gateway (default: from --config, else nats://"+gateway.DefaultListen+")")
	fs.StringVarP(&o.config, "config", "c", "", "the gateway's config file, to find it")
	fs.StringVar(&o.key, "key", "", "the operator's nkey seed file (tollgate agent add <id> --type operator)")
	fs.StringVar(&o.key, "creds", "", "same as --key")
	fs.StringVar(&o.id, "operator", "", "the operator's id as registered in the gateway config")
	fs.StringVar(&o.prefix, "subject-prefix", broker.DefaultPrefix, "the gateway's subject prefix")
	fs.DurationVar(&o.timeout, "timeout", timeout, "how long to wait for the gateway")
	fs.BoolVar(&o.json, "json", false, "print the gateway's answer as JSON")
}

// require marks the flags every operator command needs.
func (o *opFlags) require(cmd *cobra.Command) {
	_ = cmd.MarkFlagRequired("operator")
	cmd.MarkFlagsOneRequired("key", "creds")
}

// connect connects as the operator; a key that is not the operator's is
// refused at once, naming whose it is.
func (o *opFlags) connect(ctx context.Context) (*operator.Client, error) {
	url := o.url
	if url == "" && o.config != "" {
		cfg, err := gateway.LoadConfig(o.config)
		if err != nil {
			return nil, err
		}
		if url, err = cfg.ClientURL(); err != nil {
			return nil, err
		}
		if o.prefix == broker.DefaultPrefix {
			o.prefix = cfg.NATS.SubjectPrefix
		}
	}
	if url == "" {
		url = "nats://" + gateway.DefaultListen
	}
	kp, err := broker.LoadSeed(o.key)
	if err != nil {
		return nil, err
	}
	subjects, err := broker.NewSubjects(o.prefix, "")
	if err != nil {
		return nil, err
	}
	return operator.ConnectContext(ctx, operator.Config{ID: o.id, Key: kp, URL: url, Subjects: &subjects})
}

// completeRuns completes a run id (the first argument) from the ledger the
// command's flags point at: --data, --nats with --creds or --key, or
// --config.
func completeRuns(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	get := func(name string) string {
		if f := cmd.Flags().Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	src := gateway.Source{DataDir: get("data"), URL: get("nats"), Creds: get("creds"), SubjectPrefix: get("subject-prefix")}
	if src.Creds == "" {
		src.Creds = get("key")
	}
	if path := get("config"); path != "" {
		cfg, err := gateway.LoadConfig(path)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		src.Config = cfg
	}
	if src.URL == "" && src.DataDir == "" && src.Config == nil {
		src.URL = "nats://" + gateway.DefaultListen
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
	defer cancel()
	l, err := gateway.OpenLedger(ctx, src)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer l.Close()
	runs, _, err := runtree.List(ctx, l.Ledger, time.Time{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, r := range runs {
		out = append(out, cobra.CompletionWithDesc(r.RunID, r.Status+" "+r.Caller))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
