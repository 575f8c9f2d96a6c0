package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	src      ledgerSource
	file     string
	keysDir  string
	format   string
	json     bool
	payloads bool
	at       uint64
	policies []string
	head     string
}

// Replay formats.
const (
	formatText    = "text"
	formatJSON    = "json"
	formatDOT     = "dot"
	formatMermaid = "mermaid"
)

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
		Use:   "replay [<run>]",
		Short: "Replay a run from the ledger: verify it, and show who did what (or what a candidate policy would have done)",
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
	f.StringVar(&o.format, "format", formatText, "text, json, dot or mermaid")
	f.BoolVar(&o.json, "json", false, "same as --format json")
	f.BoolVar(&o.payloads, "payloads", false, "show the A2A message in and the result out of every hop")
	f.Uint64Var(&o.at, "at", 0, "show the run as of this event seq")
	f.StringArrayVar(&o.policies, "policy", nil, "candidate Cedar policies (folder, file or glob): re-decide the run with them")
	f.StringVar(&o.head, "head", "", "the hash the run must end at (as runs export printed it), to catch a copy that lost its last events")
	return cmd
}

func (o *replayOptions) validate(run string) error {
	var errs []error
	if o.json {
		if o.format != formatText && o.format != formatJSON {
			errs = append(errs, fmt.Errorf("--json and --format %s contradict each other", o.format))
		}
		o.format = formatJSON
	}
	switch o.format {
	case formatText, formatJSON, formatDOT, formatMermaid:
	default:
		errs = append(errs, fmt.Errorf("--format %q: want text, json, dot or mermaid", o.format))
	}
	if o.file != "" && (o.src.data != "" || o.src.url != "") {
		errs = append(errs, errors.New("--file reads a copy: give no --data or --nats with it"))
	}
	if o.file == "" && run == "" {
		errs = append(errs, errors.New("name the run to replay (tollgate runs list shows them), or give a copy with --file"))
	}
	if run != "" && !schemas.ValidID(run) && !strings.HasPrefix(run, rejectedPrefix) {
		errs = append(errs, fmt.Errorf("%q is not a run id", run))
	}
	if len(o.policies) > 0 && (o.at != 0 || o.format == formatDOT || o.format == formatMermaid || o.payloads) {
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
		var err error
		if set, err = compileCandidate(o.policies); err != nil {
			return err
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
	var tree *runtree.Run
	if o.at != 0 {
		tree, err = v.TreeAsOf(o.at)
	} else {
		tree, err = v.Tree()
	}
	if err != nil {
		return err
	}
	if o.payloads {
		tree.LoadPayloads()
	}
	switch o.format {
	case formatJSON:
		out := replayJSON{Run: tree, Verification: &v.Verification, Graph: tree.Graph()}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	case formatDOT:
		if err := tree.WriteDOT(stdout); err != nil {
			return err
		}
	case formatMermaid:
		if err := tree.WriteMermaid(stdout); err != nil {
			return err
		}
	default:
		if !v.OK() {
			fmt.Fprintf(stdout, "LEDGER VERIFICATION FAILED at event %d; the tree shows the first %d events only.\n\n", v.Broken.Seq, v.Valid)
		}
		if err := tree.WriteTextOptions(stdout, runtree.TextOptions{Payloads: o.payloads}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nLedger: %d events, head %.16s…, %s\n", v.Events, v.HeadHash, v.Summary())
	}
	if !v.OK() {
		return &verifyFailed{err: v.Err()}
	}
	if v.Signatures == runtree.SigNotChecked && o.format != formatText {
		fmt.Fprintln(stderr, "tollgate: signatures were NOT checked: no key for any sender (give --keys DIR or --config FILE)")
	}
	return nil
}

// replayJSON is what replay --json prints: the run (as demo --json prints
// it), its verification and its call graph.
type replayJSON struct {
	*runtree.Run
	Verification *runtree.Verification `json:"verification"`
	Graph        *runtree.Graph        `json:"graph"`
}

// readAndVerify reads the run from the copy or the ledger and verifies it
// while it is read.
func readAndVerify(ctx context.Context, run string, o *replayOptions, cfg *gateway.Config) (*runtree.Verified, error) {
	if o.file != "" {
		recs, fileRun, err := readCopy(o.file)
		if err != nil {
			return nil, err
		}
		if run == "" {
			if run = fileRun; run == "" {
				return nil, fmt.Errorf("%s: no line is a readable ledger event; name the run to verify it against", o.file)
			}
		}
		keys, err := loadKeys(o.keysDir, cfg, "")
		if err != nil {
			return nil, err
		}
		return runtree.Verify(run, recs, keys), nil
	}
	l, err := o.src.open(ctx)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	keys, err := loadKeys(o.keysDir, cfg, l.dataDir)
	if err != nil {
		return nil, err
	}
	ver := runtree.NewVerifier(run, keys)
	err = l.Scan(ctx, run, func(r ledger.Record) error {
		ver.Add(r)
		return nil
	})
	v := ver.Finish()
	if errors.Is(err, ledger.ErrNoRun) {
		return nil, fmt.Errorf("run %s is not in the ledger at %s (tollgate runs list shows the runs)", run, o.src.where())
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func readCopy(path string) ([]ledger.Record, string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		r = f
	}
	recs, run, err := runtree.ReadJSONL(r)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, "", fmt.Errorf("%s holds no events", path)
	}
	return recs, run, nil
}

// loadKeys gathers the public keys to check signatures with: --keys,
// --config, and, when neither is given, DIR/keys of the data folder read.
// nil means no keys at all: signatures are not checked.
func loadKeys(keysDir string, cfg *gateway.Config, dataDir string) (runtree.Keys, error) {
	keys := runtree.Keys{}
	found := false
	if cfg != nil {
		for _, ic := range append(slices.Clone(cfg.Agents), cfg.Users...) {
			if ic.PublicKey == "" {
				continue
			}
			pub, err := broker.ParsePublicKey(ic.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("config: %s: %w", ic.ID, err)
			}
			keys.Add(ic.ID, pub)
		}
		found = true
	}
	if keysDir == "" && !found && dataDir != "" {
		if fi, err := os.Stat(filepath.Join(dataDir, "keys")); err == nil && fi.IsDir() {
			keysDir = filepath.Join(dataDir, "keys")
		}
	}
	if keysDir != "" {
		if err := readKeyDir(keysDir, keys); err != nil {
			return nil, err
		}
		found = true
	}
	if !found {
		return nil, nil
	}
	return keys, nil
}

// readKeyDir reads <id>.pub files (nkey public keys, one per line; # starts
// a comment) and <id>.nk seed files; other files are ignored.
func readKeyDir(dir string, keys runtree.Keys) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		id := strings.TrimSuffix(name, ext)
		if e.IsDir() || ext != ".pub" && ext != ".nk" {
			continue
		}
		path := filepath.Join(dir, name)
		if !schemas.ValidPrincipalID(id) {
			errs = append(errs, fmt.Errorf("key file %s: %q is not an identity id", path, id))
			continue
		}
		if ext == ".nk" {
			kp, err := broker.LoadSeed(path)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			pk, err := kp.PublicKey()
			if err == nil {
				var pub ed25519.PublicKey
				if pub, err = broker.ParsePublicKey(pk); err == nil {
					keys.Add(id, pub)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("key file %s: %w", path, err))
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys: %w", err))
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			pub, err := broker.ParsePublicKey(line)
			if err != nil {
				errs = append(errs, fmt.Errorf("key file %s:%d: %w", path, n, err))
				continue
			}
			keys.Add(id, pub)
		}
	}
	return errors.Join(errs...)
}

// compileCandidate reads and compiles the candidate policies of a what-if.
func compileCandidate(paths []string) (*policy.Set, error) {
	var globs []string
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			p = filepath.Join(p, "*.cedar")
		}
		globs = append(globs, p)
	}
	files, err := policy.ReadFiles(globs)
	if err != nil {
		return nil, fmt.Errorf("candidate policies: %w", err)
	}
	set, err := policy.Compile(files)
	if err != nil {
		return nil, fmt.Errorf("candidate policies: %w", err)
	}
	return set, nil
}

func whatIf(stdout, stderr io.Writer, v *runtree.Verified, set *policy.Set, o *replayOptions, cfg *gateway.Config) error {
	if !v.OK() {
		fmt.Fprintf(stderr, "tollgate: refusing a what-if on a run that fails verification: %s\n", v.Summary())
		return &verifyFailed{err: v.Err()}
	}
	var ids []broker.Identity
	if cfg != nil {
		if dir, err := cfg.Directory(); err == nil {
			for _, id := range dir.All() {
				ids = append(ids, broker.Identity{ID: id.ID, Type: id.Type, Team: id.Team, Tags: id.Tags})
			}
		}
	}
	rep, err := whatif.Evaluate(v.RunID, v.Records(), set, whatif.Options{Identities: ids, Source: strings.Join(o.policies, ", ")})
	if err != nil {
		return err
	}
	if o.format == formatJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*whatif.Report
			Verification *runtree.Verification `json:"verification"`
		}{rep, &v.Verification})
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Ledger: %d events, head %.16s…, %s\n", v.Events, v.HeadHash, v.Summary())
	return nil
}

// writeDemoKeys writes the public key of every identity of the demo's
// config to DIR/keys/<id>.pub, so that a kept demo run can be replayed and
// its signatures checked: replay --data DIR looks there. The demo makes
// fresh keys each time, so a key is added to the file rather than
// replacing it: runs of earlier demos in the same folder still verify.
func writeDemoKeys(dataDir string, cfg *gateway.Config) error {
	dir := filepath.Join(dataDir, "keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo keys: %w", err)
	}
	for _, ic := range append(slices.Clone(cfg.Users), cfg.Agents...) {
		if ic.PublicKey == "" {
			continue
		}
		path := filepath.Join(dir, ic.ID+".pub")
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("demo keys: %w", err)
		}
		if slices.Contains(strings.Fields(string(old)), ic.PublicKey) {
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("demo keys: %w", err)
		}
		_, werr := fmt.Fprintln(f, ic.PublicKey)
		if err := errors.Join(werr, f.Close()); err != nil {
			return fmt.Errorf("demo keys: %w", err)
		}
	}
	return nil
}
