package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/schemas"
)

// ledgerSource says where the ledger is read from: a data folder that a
// gateway left behind (demo --data, serve --data), a NATS server, or a
// gateway config that names one of them.
type ledgerSource struct {
	data, url, creds, config    string
	subjectPrefix, streamPrefix string
	timeout                     time.Duration

	flags *pflag.FlagSet
	cfg   *gateway.Config
}

func (s *ledgerSource) addFlags(fs *pflag.FlagSet) {
	s.flags = fs
	fs.StringVar(&s.data, "data", "", "a gateway's data folder (demo --data, serve --data): its ledger is read in-process; refused while a gateway holds it")
	fs.StringVar(&s.url, "nats", "", "NATS URL of a running gateway's server")
	fs.StringVar(&s.creds, "creds", "", "nkey seed file to connect to --nats with")
	fs.StringVarP(&s.config, "config", "c", "", "gateway config: its nats settings say where the ledger is, its identities' public keys check signatures")
	fs.StringVar(&s.subjectPrefix, "subject-prefix", broker.DefaultPrefix, "the gateway's subject prefix")
	fs.StringVar(&s.streamPrefix, "stream-prefix", "", "the gateway's stream-name prefix")
	fs.DurationVar(&s.timeout, "timeout", 2*time.Minute, "give up after this long")
}

// loadConfig reads --config once.
func (s *ledgerSource) loadConfig() (*gateway.Config, error) {
	if s.config == "" || s.cfg != nil {
		return s.cfg, nil
	}
	cfg, err := gateway.LoadConfig(s.config)
	if err != nil {
		return nil, err
	}
	s.cfg = cfg
	return cfg, nil
}

// resolve fills what --config says and the flags left open, and checks
// that exactly one place was named.
func (s *ledgerSource) resolve() error {
	cfg, err := s.loadConfig()
	if err != nil {
		return err
	}
	if cfg != nil {
		if !s.flags.Changed("subject-prefix") {
			s.subjectPrefix = cfg.NATS.SubjectPrefix
		}
		if !s.flags.Changed("stream-prefix") {
			s.streamPrefix = cfg.NATS.StreamPrefix
		}
		if s.data == "" && s.url == "" {
			if cfg.NATS.URL != "" {
				s.url, s.creds = cfg.NATS.URL, cfg.Path(cfg.NATS.Credentials)
			} else {
				s.data = cfg.Path(cfg.NATS.DataDir)
			}
		}
	}
	switch {
	case s.data != "" && s.url != "":
		return errors.New("give either --data or --nats, not both")
	case s.data == "" && s.url == "":
		return errors.New("say where the ledger is: --data DIR (a demo's or gateway's data folder), --nats URL, or --config FILE")
	}
	return nil
}

// openLedger is a connection to a ledger stream.
type openLedger struct {
	*ledger.Ledger
	js       jetstream.JetStream
	stream   jetstream.Stream
	name     string
	subjects broker.Subjects
	// dataDir is the data folder read, when it was one.
	dataDir string
	closers []func()
}

func (o *openLedger) Close() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
}

// open connects to the ledger stream. With --data it starts an embedded
// server on the folder's store, serving in-process only, after taking the
// folder's lock; it never creates or provisions anything there.
func (s *ledgerSource) open(ctx context.Context) (_ *openLedger, err error) {
	if err := s.resolve(); err != nil {
		return nil, err
	}
	subjects, err := broker.NewSubjects(s.subjectPrefix, s.streamPrefix)
	if err != nil {
		return nil, err
	}
	o := &openLedger{subjects: subjects}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	var nc *nats.Conn
	if s.data != "" {
		o.dataDir = s.data
		emb, closeStore, err := gateway.OpenDataDir(ctx, s.data)
		if err != nil {
			return nil, err
		}
		o.closers = append(o.closers, closeStore)
		nc, err = broker.Connect(broker.ConnectConfig{InProcess: emb, Name: "tollgate replay", Options: []nats.Option{nats.MaxReconnects(0)}})
		if err != nil {
			return nil, err
		}
	} else {
		cc := broker.ConnectConfig{URL: s.url, Name: "tollgate replay", Options: []nats.Option{nats.MaxReconnects(2)}}
		if s.creds != "" {
			if cc.Key, err = broker.LoadSeed(s.creds); err != nil {
				return nil, err
			}
		}
		if nc, err = broker.Connect(cc); err != nil {
			return nil, err
		}
	}
	o.closers = append(o.closers, nc.Close)
	if o.js, err = jetstream.New(nc); err != nil {
		return nil, err
	}
	name := subjects.Stream(broker.StreamLedger)
	o.name = name
	if o.stream, err = o.js.Stream(ctx, name); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("there is no %s stream at %s: not a Tollgate gateway's store, or another stream prefix (--stream-prefix)", name, s.where())
		}
		return nil, fmt.Errorf("ledger stream %s at %s: %w", name, s.where(), err)
	}
	o.Ledger = ledger.New(o.js, name, subjects)
	return o, nil
}

func (s *ledgerSource) where() string {
	if s.data != "" {
		return s.data
	}
	return s.url
}

func newRunsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "runs", Short: "List runs and export them from the ledger (auditors)"}
	cmd.AddCommand(newRunsListCmd(), newRunsExportCmd())
	return cmd
}

type runsListOptions struct {
	src      ledgerSource
	since    string
	agent    string
	statuses []string
	rejects  bool
	limit    int
	json     bool
}

func newRunsListCmd() *cobra.Command {
	var o runsListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the runs of the ledger, newest first",
		Long: `List the runs recorded in the LEDGER stream, newest first: when each started,
its status, who started it, its workflow, hops, denials, spend and the first
limit it tripped.

Filters: --since (a duration such as 24h or 7d, or a date), --agent (runs in
which the agent called or was called, denied attempts included), --status
(running, completed, failed, canceled, rejected, halted; repeatable).
Entries of rejected submissions that belonged to no run (_rejected-*) are
left out unless --rejects is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runsList(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &o)
		},
	}
	o.src.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.since, "since", "", "only runs started since: a duration (24h, 90m, 7d) or a date (2006-01-02, RFC 3339)")
	cmd.Flags().StringVar(&o.agent, "agent", "", "only runs in which this agent called or was called")
	cmd.Flags().StringSliceVar(&o.statuses, "status", nil, "only runs with this status: running, completed, failed, canceled, rejected, halted")
	cmd.Flags().BoolVar(&o.rejects, "rejects", false, "also list the entries of rejected submissions that belonged to no run")
	cmd.Flags().IntVar(&o.limit, "limit", 100, "list at most this many runs (0: all)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the runs as a JSON array")
	return cmd
}

var runStatuses = []string{runtree.StatusRunning, string(schemas.StateCompleted), string(schemas.StateFailed),
	string(schemas.StateCanceled), string(schemas.StateRejected), runtree.StatusHalted}

// runSummary is one line of runs list.
type runSummary struct {
	RunID      string    `json:"run_id"`
	Status     string    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	LastAt     time.Time `json:"last_at"`
	Caller     string    `json:"caller,omitempty"`
	OnBehalfOf string    `json:"on_behalf_of,omitempty"`
	Workflow   string    `json:"workflow,omitempty"`
	Events     int       `json:"events"`
	Hops       int       `json:"hops"`
	Denied     int       `json:"denied"`
	Tokens     int64     `json:"tokens"`
	CostUSD    float64   `json:"cost_usd"`
	// Agents are every identity that called or was called in the run.
	Agents []string `json:"agents"`
	// Breach is the first limit the run tripped.
	Breach   string `json:"breach,omitempty"`
	HaltedBy string `json:"halted_by,omitempty"`
	TraceID  string `json:"trace_id,omitempty"`
	HeadHash string `json:"head_hash"`
	// Rejected marks the entry of a rejected submission that belonged to
	// no run; Reason is why it was rejected.
	Rejected bool           `json:"rejected_submission,omitempty"`
	Reason   schemas.Reason `json:"reason,omitempty"`

	agents    map[string]bool
	completed schemas.TaskState
}

// add folds one event into the summary. It reads the event as recorded;
// it does not verify (replay does).
func (s *runSummary) add(ev *schemas.Event) error {
	data, err := ev.DecodeData()
	if err != nil {
		return err
	}
	s.Events++
	s.LastAt, s.HeadHash = ev.At, ev.Hash
	switch d := data.(type) {
	case *schemas.RunStarted:
		s.StartedAt, s.Caller, s.OnBehalfOf, s.Workflow, s.TraceID = ev.At, d.Caller, d.OnBehalfOf, d.Workflow, d.TraceID
	case *schemas.HopDecision:
		if d.Kind != schemas.KindInvoke && d.Kind != "" {
			return nil
		}
		if s.Rejected {
			s.StartedAt, s.Caller, s.Reason = ev.At, d.From, d.Reason
		}
		if ev.Type == schemas.EventHopAllowed {
			s.Hops++
		} else {
			s.Denied++
		}
		for _, id := range []string{d.From, d.To} {
			if id != "" {
				s.agents[id] = true
			}
		}
	case *schemas.HopCompleted:
		s.Tokens += d.Usage.Tokens()
		s.CostUSD += d.Usage.Cost()
	case *schemas.RunLimitBreached:
		if s.Breach == "" {
			s.Breach = d.Limit
		}
	case *schemas.RunHalted:
		s.HaltedBy = d.By
	case *schemas.RunCompleted:
		s.completed = d.Status
	}
	return nil
}

func (s *runSummary) finish() {
	switch {
	case s.Rejected:
		s.Status = string(schemas.StateRejected)
	case s.HaltedBy != "":
		s.Status = runtree.StatusHalted
	case s.completed != "":
		s.Status = string(s.completed)
	default:
		s.Status = runtree.StatusRunning
	}
	s.Agents = make([]string, 0, len(s.agents))
	for id := range s.agents {
		s.Agents = append(s.Agents, id)
	}
	slices.Sort(s.Agents)
}

// rejectedPrefix starts the ledger entries of rejected submissions that
// belonged to no run (see broker/subjects.go).
const rejectedPrefix = "_rejected-"

func runsList(ctx context.Context, stdout, stderr io.Writer, o *runsListOptions) error {
	since, err := parseSince(o.since, time.Now())
	if err != nil {
		return err
	}
	for _, st := range o.statuses {
		if !slices.Contains(runStatuses, st) {
			return fmt.Errorf("--status %q: want one of %s", st, strings.Join(runStatuses, ", "))
		}
	}
	if o.limit < 0 {
		return errors.New("--limit must not be negative")
	}
	ctx, cancel := context.WithTimeout(ctx, o.src.timeout)
	defer cancel()
	l, err := o.src.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	runs, unreadable, err := summarize(ctx, l, since)
	if err != nil {
		return err
	}
	if unreadable > 0 {
		fmt.Fprintf(stderr, "tollgate: %d ledger events could not be read and were skipped; replay their runs to find out why\n", unreadable)
	}
	var out []*runSummary
	for _, r := range runs {
		switch {
		case r.Rejected && !o.rejects,
			r.StartedAt.Before(since),
			o.agent != "" && !r.agents[o.agent],
			len(o.statuses) > 0 && !slices.Contains(o.statuses, r.Status):
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *runSummary) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.RunID, a.RunID)
	})
	total := len(out)
	if o.limit > 0 && total > o.limit {
		out = out[:o.limit]
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if out == nil {
			out = []*runSummary{}
		}
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tSTATUS\tCALLER\tWORKFLOW\tHOPS\tDENIED\tTOKENS\tCOST\tBREACH")
	for _, r := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t$%.4f\t%s\n", r.RunID, r.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), r.Status,
			orDash(r.Caller), orDash(r.Workflow), r.Hops, r.Denied, r.Tokens, r.CostUSD, orDash(r.Breach))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(out) < total {
		fmt.Fprintf(stderr, "%d of %d runs shown (--limit 0 shows all)\n", len(out), total)
	}
	return nil
}

// summarize reads the ledger stream once, from since on (all of it when
// since is zero), with one ordered consumer over every run's subject, and
// folds each run's events into its summary. A run whose first event came
// before since is left out: it started earlier.
func summarize(ctx context.Context, l *openLedger, since time.Time) (map[string]*runSummary, int, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.subjects.LedgerAll()}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		// The stream's clock (when the server stored an event) starts the
		// read, a margin early for clock skew; the run's own start time
		// (run.started) decides.
		start := since.Add(-5 * time.Minute)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := l.js.OrderedConsumer(ctx, l.name, cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("read the ledger: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read the ledger: %w", err)
	}
	runs := map[string]*runSummary{}
	skip := map[string]bool{}
	unreadable := 0
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 512)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return nil, 0, fmt.Errorf("read the ledger: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			run, ok := l.subjects.LedgerRun(m.Subject())
			if !ok || skip[run] {
				continue
			}
			ev, err := schemas.DecodeEvent(m.Data())
			if err != nil {
				unreadable++
				continue
			}
			s := runs[run]
			if s == nil {
				if ev.Seq != 1 {
					skip[run] = true // started before since
					continue
				}
				s = &runSummary{RunID: run, Rejected: strings.HasPrefix(run, rejectedPrefix), agents: map[string]bool{}}
				runs[run] = s
			}
			if err := s.add(ev); err != nil {
				unreadable++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, 0, fmt.Errorf("read the ledger: %w", err)
		}
		if n == 0 {
			return nil, 0, fmt.Errorf("read the ledger: no messages for 10s with %d still pending", left)
		}
		left -= uint64(n)
	}
	for _, s := range runs {
		s.finish()
	}
	return runs, unreadable, nil
}

type runsExportOptions struct {
	src ledgerSource
	out string
}

func newRunsExportCmd() *cobra.Command {
	var o runsExportOptions
	cmd := &cobra.Command{
		Use:   "export <run>",
		Short: "Write a run's ledger events, exactly as stored, one per line",
		Long: `Write a copy of a run: its ledger events exactly as stored, one JSON object
per line, to stdout or --output. The copy is what an auditor keeps and checks
with 'tollgate replay --file'; its last event's hash (printed here) is the
head the live ledger vouches for, so that a copy that lost events at its end
is caught with 'replay --file COPY --head HASH'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runsExport(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], &o)
		},
	}
	o.src.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.out, "output", "o", "", "write the copy to this file instead of stdout")
	return cmd
}

func runsExport(ctx context.Context, stdout, stderr io.Writer, run string, o *runsExportOptions) (err error) {
	ctx, cancel := context.WithTimeout(ctx, o.src.timeout)
	defer cancel()
	l, err := o.src.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	w := stdout
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		w = f
	}
	n, head := 0, ""
	var buf []ledger.Record
	flush := func() error {
		err := runtree.WriteJSONL(w, buf)
		buf = buf[:0]
		return err
	}
	err = l.Scan(ctx, run, func(r ledger.Record) error {
		n++
		head = r.Event.Hash
		buf = append(buf, r)
		if len(buf) == 512 {
			return flush()
		}
		return nil
	})
	if errors.Is(err, ledger.ErrNoRun) {
		return fmt.Errorf("run %s is not in the ledger (tollgate runs list shows the runs)", run)
	}
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d events of run %s; head %s\n", n, run, head)
	return nil
}
