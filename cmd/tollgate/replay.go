package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/whatif"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/schemas"
)

type replayOptions struct {
	src      sourceFlags
	file     string
	keysDir  string
	format   string
	json     bool
	payloads bool
	at       uint64
	policies []string
	head     string
	// failOnChange makes a what-if exit exitChanged when a decision would
	// change.
	failOnChange bool
}

// exitChanged is replay --policy --fail-on-change's exit status when the
// candidate policy would change a decision (for CI gates on policy
// changes).
const exitChanged = 3

// decisionsChanged is the error of a what-if whose policy would change a
// decision, under --fail-on-change.
type decisionsChanged struct{ n int }

func (e *decisionsChanged) Error() string {
	return fmt.Sprintf("the candidate policy would change %d decisions (--fail-on-change)", e.n)
}
func (e *decisionsChanged) ExitCode() int { return exitChanged }

// exitTampered is replay's exit status when the ledger fails verification.
const exitTampered = 2

// verifyFailed is the error of a run that failed verification: main exits
// with exitTampered.
type verifyFailed struct{ err error }

func (e *verifyFailed) Error() string { return e.err.Error() }
func (e *verifyFailed) Unwrap() error { return e.err }
func (e *verifyFailed) ExitCode() int { return exitTampered }

func newReplayCmd() *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:               "replay [<run>]",
		ValidArgsFunction: completeRuns,
		Short:             "Replay a run from the ledger: verify it, and show who did what (or what a candidate policy would have done)",
		Long: `Read a run's ledger, verify it, and show it.

Verification checks the hash chain (nothing edited, removed, inserted or
reordered) and, given the senders' public keys, the Ed25519 signature of
every envelope the run admitted. Keys come from --config (the identities'
public_key entries), --keys DIR (<id>.pub files, one key per line, or <id>.nk
seed files), or DIR/keys of --data DIR (which 'tollgate demo --data DIR'
writes). Without keys the signatures are not checked, and replay says so.
The first broken link is named (event seq, type, hop) and replay exits with
status 2.

The run is read from a gateway's data folder (--data, in-process; refused
while a gateway holds the folder), a NATS server (--nats, --creds), the
gateway config (--config), or a copy made by 'tollgate runs export' (--file;
the run id is then optional).

Output: the run as a tree in time order (text, the default), --json, or the
call graph as --format dot or mermaid. --payloads adds the A2A message in
and the result out of every hop; --at SEQ shows the run as it stood after
that event.

--policy PATH (a folder of .cedar files, a file or a glob; repeatable)
re-decides every invoke of the run with that candidate policy set and lists
the hops whose decision would change: "would this policy have stopped last
night's loop, and at which hop?" (see docs/replay.md).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run := ""
			if len(args) == 1 {
				run = args[0]
			}
			return replay(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), run, &o)
		},
	}
	o.src.addFlags(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&o.file, "file", "", `a copy of the run (tollgate runs export), "-" for stdin`)
	f.StringVar(&o.keysDir, "keys", "", "folder of public keys (<id>.pub) or key seeds (<id>.nk) to check signatures with")
	f.StringVar(&o.format, "format", runtree.FormatText, "text, json, dot or mermaid")
	f.BoolVar(&o.json, "json", false, "same as --format json")
	f.BoolVar(&o.payloads, "payloads", false, "show the A2A message in and the result out of every hop")
	f.Uint64Var(&o.at, "at", 0, "show the run as of this event seq")
	f.StringArrayVar(&o.policies, "policy", nil, "candidate Cedar policies (folder, file or glob): re-decide the run with them")
	f.BoolVar(&o.failOnChange, "fail-on-change", false, "with --policy: exit with status 3 when a decision would change (a CI gate for policy changes)")
	f.StringVar(&o.head, "head", "", "the hash the run must end at (as runs export printed it), to catch a copy that lost its last events")
	return cmd
}

func (o *replayOptions) validate(run string) error {
	var errs []error
	if o.json {
		if o.format != runtree.FormatText && o.format != runtree.FormatJSON {
			errs = append(errs, fmt.Errorf("--json and --format %s contradict each other", o.format))
		}
		o.format = runtree.FormatJSON
	}
	switch o.format {
	case runtree.FormatText, runtree.FormatJSON, runtree.FormatDOT, runtree.FormatMermaid:
	default:
		errs = append(errs, fmt.Errorf("--format %q: want text, json, dot or mermaid", o.format))
	}
	if o.file != "" && (o.src.data != "" || o.src.url != "") {
		errs = append(errs, errors.New("--file reads a copy: give no --data or --nats with it"))
	}
	if o.failOnChange && len(o.policies) == 0 {
		errs = append(errs, errors.New("--fail-on-change needs --policy (the candidate policies to compare)"))
	}
	if o.file == "" && run == "" {
		errs = append(errs, errors.New("name the run to replay (tollgate runs list shows them), or give a copy with --file"))
	}
	if run != "" && !schemas.ValidID(run) && !strings.HasPrefix(run, ledger.RejectedPrefix) {
		errs = append(errs, fmt.Errorf("%q is not a run id", run))
	}
	if len(o.policies) > 0 && (o.at != 0 || o.format == runtree.FormatDOT || o.format == runtree.FormatMermaid || o.payloads) {
		errs = append(errs, errors.New("--policy prints a what-if report (text or --json); --at, --payloads and graph formats do not apply to it"))
	}
	return errors.Join(errs...)
}

func replay(ctx context.Context, stdout, stderr io.Writer, run string, o *replayOptions) error {
	if err := o.validate(run); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.src.timeout)
	defer cancel()
	var set *policy.Set
	if len(o.policies) > 0 {
		files, err := policy.ReadPaths(o.policies)
		if err == nil {
			set, err = policy.Compile(files)
		}
		if err != nil {
			return fmt.Errorf("candidate policies: %w", err)
		}
	}
	cfg, err := o.src.loadConfig()
	if err != nil {
		return err
	}
	v, err := readAndVerify(ctx, run, o, cfg)
	if err != nil {
		return err
	}
	if o.head != "" {
		v.ExpectHead(o.head)
	}
	if set != nil {
		return whatIf(stdout, stderr, v, set, o, cfg)
	}
	if err := runtree.WriteReplay(stdout, v, runtree.ReplayOptions{Format: o.format, AsOf: o.at, Payloads: o.payloads}); err != nil {
		return err
	}
	if !v.OK() {
		return &verifyFailed{err: v.Err()}
	}
	if v.Signatures == ledger.SigNotChecked && o.format != runtree.FormatText {
		fmt.Fprintln(stderr, "tollgate: signatures were NOT checked: no key for any sender (give --keys DIR or --config FILE)")
	}
	return nil
}

// readAndVerify reads the run from the copy or the ledger and verifies it
// while it is read.
func readAndVerify(ctx context.Context, run string, o *replayOptions, cfg *gateway.Config) (*ledger.Verified, error) {
	if o.file != "" {
		keys, kerr := gateway.SigningKeys(cfg, o.keysDir, "")
		v, err := runtree.VerifyCopy(o.file, os.Stdin, run, keys)
		if err == nil && kerr != nil {
			v, err = nil, kerr // the copy's problems come first
		}
		return v, err
	}
	l, err := o.src.open(ctx)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	keys, err := gateway.SigningKeys(cfg, o.keysDir, l.DataDir)
	if err != nil {
		return nil, err
	}
	v, err := l.ReadVerified(ctx, run, keys)
	if errors.Is(err, ledger.ErrNoRun) {
		return nil, fmt.Errorf("run %s is not in the ledger at %s (tollgate runs list shows the runs)", run, l.Where)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func whatIf(stdout, stderr io.Writer, v *ledger.Verified, set *policy.Set, o *replayOptions, cfg *gateway.Config) error {
	if !v.OK() {
		fmt.Fprintf(stderr, "tollgate: refusing a what-if on a run that fails verification: %s\n", v.Summary())
		return &verifyFailed{err: v.Err()}
	}
	var ids []broker.Identity
	if cfg != nil {
		ids = cfg.Identities()
	}
	rep, err := whatif.Evaluate(v.RunID, v.Records(), set, whatif.Options{Identities: ids, Source: strings.Join(o.policies, ", ")})
	if err != nil {
		return err
	}
	var changed error
	if o.failOnChange && rep.Changed > 0 {
		changed = &decisionsChanged{n: rep.Changed}
	}
	if o.format == runtree.FormatJSON {
		if err := writeJSON(stdout, struct {
			*whatif.Report
			Verification *ledger.Verification `json:"verification"`
		}{rep, &v.Verification}); err != nil {
			return err
		}
		return changed
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Ledger: %d events, head %.16s…, %s\n", v.Events, v.HeadHash, v.Summary())
	return changed
}
