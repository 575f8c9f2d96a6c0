package ledger

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate/tollgate/schemas"
)

// Keys are the public keys envelope signatures are checked with: for each
// identity, every key it has held (a key file may list several after a
// rotation). A signature is good when one of its sender's keys made it.
type Keys map[string][]ed25519.PublicKey

// Add adds a key of id, once.
func (k Keys) Add(id string, pub ed25519.PublicKey) {
	for _, have := range k[id] {
		if have.Equal(pub) {
			return
		}
	}
	k[id] = append(k[id], pub)
}

// Chain and signature verdicts.
const (
	ChainIntact = "intact"
	ChainBroken = "broken"

	// SigVerified: every envelope the run admitted was checked and good.
	SigVerified = "verified"
	// SigPartial: the checked envelopes are good, but some senders had no
	// key, so their envelopes were not checked.
	SigPartial = "partial"
	// SigNotChecked: no keys were given, or none for any sender.
	SigNotChecked = "not_checked"
	// SigFailed: an envelope's signature does not check.
	SigFailed = "failed"
)

// Verification is what verifying a run found.
type Verification struct {
	RunID  string `json:"run_id"`
	Events int    `json:"events"`
	// Chain is intact or broken.
	Chain string `json:"chain"`
	// Signatures is verified, partial, not_checked or failed.
	Signatures string `json:"signatures"`
	// Checked counts the envelope signatures checked and found good.
	Checked int `json:"signatures_checked"`
	// Unchecked counts, per sender, the admitted envelopes that were not
	// checked because no key was given for the sender.
	Unchecked map[string]int `json:"signatures_unchecked,omitempty"`
	// Broken names the first broken link, nil when there is none.
	Broken *Link `json:"broken,omitempty"`
	// Valid is the number of leading events before the first broken link:
	// the part of the run that can be shown.
	Valid int `json:"valid_events"`
	// HeadHash is the hash of the last valid event.
	HeadHash string `json:"head_hash"`
}

// Link names an event of the run and what is wrong with it.
type Link struct {
	// Seq is the event's position in the run (from 1).
	Seq uint64 `json:"seq"`
	// StreamSeq is where it sits in the LEDGER stream (0 for a copy).
	StreamSeq uint64            `json:"stream_seq,omitempty"`
	Type      schemas.EventType `json:"type,omitempty"`
	HopID     string            `json:"hop_id,omitempty"`
	// Kind is chain (the hash chain), signature (an envelope) or head (the
	// run does not end at the head it was expected to end at).
	Kind    string `json:"kind"`
	Problem string `json:"problem"`
}

// Err returns the first broken link as a *VerifyError (which wraps
// ErrTampered), or nil when the run verified.
func (v *Verification) Err() error {
	if v.Broken == nil {
		return nil
	}
	b := v.Broken
	return &VerifyError{Seq: b.Seq, StreamSeq: b.StreamSeq, Type: b.Type, HopID: b.HopID, Problem: b.Problem}
}

// OK reports whether nothing was found broken. Signatures that could not
// be checked for lack of keys do not make a run fail.
func (v *Verification) OK() bool { return v.Broken == nil }

// Summary says in one line what was verified and what was not.
func (v *Verification) Summary() string {
	if v.Broken != nil {
		return "FAILED: " + Printable(v.Err().Error())
	}
	s := "hash chain intact"
	switch v.Signatures {
	case SigVerified:
		s += fmt.Sprintf("; every admitted envelope's signature checks (%d)", v.Checked)
	case SigPartial:
		s += fmt.Sprintf("; %d envelope signatures check, %d NOT checked (no key for %s)", v.Checked, v.unchecked(), Printable(v.uncheckedSenders()))
	default:
		s += "; signatures NOT checked (no keys given)"
	}
	return s
}

func (v *Verification) unchecked() int {
	n := 0
	for _, c := range v.Unchecked {
		n += c
	}
	return n
}

func (v *Verification) uncheckedSenders() string {
	ids := make([]string, 0, len(v.Unchecked))
	for id := range v.Unchecked {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += ", "
		}
		s += id
	}
	return s
}

// Entry is an event as the verifier decoded it from its stored bytes: the
// event, its data (one of the schemas data types, as
// schemas.Event.DecodeData returns it), and where it is stored (0 for a
// copy). State.ApplyDecoded folds it without decoding it again.
type Entry struct {
	Event     schemas.Event
	Data      any
	StreamSeq uint64
}

// Verified is a verified run: the verdict and the events decoded from the
// very bytes that were verified, from which views of the run (ledger/runtree)
// are built.
type Verified struct {
	Verification
	evs []Entry
}

// Entries returns the run's valid events (all of them when the run
// verified), in order. The caller must not modify them.
func (v *Verified) Entries() []Entry { return v.evs[:v.Valid] }

// Records returns the valid events as records (Event decoded from Raw).
func (v *Verified) Records() []Record {
	out := make([]Record, v.Valid)
	for i := range out {
		out[i] = Record{Event: v.evs[i].Event, StreamSeq: v.evs[i].StreamSeq}
	}
	return out
}

// ExpectHead checks that the run ends at the event whose hash is head, as
// when a copy is compared with the live ledger's head: a copy can lose
// events from its end without breaking its chain. It records a broken link
// when the run ends elsewhere.
func (v *Verified) ExpectHead(head string) {
	if v.Broken != nil || head == "" || v.HeadHash == head {
		return
	}
	n := len(v.evs)
	for i := 0; i+1 < n; i++ {
		if v.evs[i].Event.Hash == head {
			e := v.evs[i+1]
			v.breakAt(i+1, &Link{Seq: uint64(i + 2), StreamSeq: e.StreamSeq, Type: e.Event.Type, HopID: e.Event.HopID, Kind: "head",
				Problem: fmt.Sprintf("the run goes on past the expected head (event %d, hash %.12s…)", i+1, head)})
			return
		}
	}
	last := &Link{Seq: uint64(n), Kind: "head"}
	if n > 0 {
		e := v.evs[n-1]
		last.StreamSeq, last.Type, last.HopID = e.StreamSeq, e.Event.Type, e.Event.HopID
	}
	last.Problem = fmt.Sprintf("the run ends at event %d (hash %.12s…), not at the expected head %.12s…: events were removed from its end, or it is another run",
		n, v.HeadHash, head)
	v.breakAt(n, last)
}

// breakAt records l as the first broken link, with the events before
// valid still shown.
func (v *Verified) breakAt(valid int, l *Link) {
	v.Broken, v.Valid = l, valid
	v.HeadHash = schemas.GenesisHash
	if valid > 0 {
		v.HeadHash = v.evs[valid-1].Event.Hash
	}
}

// Verify checks a run's records, spread over every CPU:
//   - the hash chain: every event is well formed, belongs to the run,
//     follows its predecessor (seq and prev_hash), and its hash matches its
//     content (so any edit, deletion or reordering is found);
//   - when keys is not nil, the signature of every envelope the run
//     admitted (the invoke of hop.allowed, the reply or cancel of
//     hop.completed) against every key its sender has held. An admitted
//     envelope that is missing, does not decode, or names another sender
//     than the event records is a broken link; a sender without a key is
//     counted as unchecked (Verification.Unchecked), not as a failure.
//     Denied envelopes are not checked: a bad signature may be why they
//     were denied.
//
// It reads each record's Raw bytes; a record's Event, when set (as
// Ledger.Read and Scan return it), spares decoding Raw again only if it
// encodes back to exactly those bytes. The verdict names the first broken
// link; Verified.Entries are the events before it.
func Verify(run string, recs []Record, keys Keys) *Verified {
	v := NewVerifier(run, keys)
	for _, r := range recs {
		v.Add(r)
	}
	return v.Finish()
}

// Verifier verifies a run's records while they are being read, as Verify
// does: Add them in order (it fits Ledger.Scan), then call Finish exactly
// once.
type Verifier struct {
	run  string
	keys Keys
	jobs chan *chunk
	wg   sync.WaitGroup
	done []*chunk
	cur  *chunk
}

const chunkSize = 256

type chunk struct {
	start int
	recs  []Record
	out   []checked
}

// checked is what the workers found about one record; the links between
// records are checked afterwards, in order.
type checked struct {
	Entry
	check      EventCheck
	sigProblem string
	sigChecked bool
	sigNoKey   string
}

// NewVerifier starts a verifier for run; keys nil skips signatures.
func NewVerifier(run string, keys Keys) *Verifier {
	v := &Verifier{run: run, keys: keys, jobs: make(chan *chunk, 2*runtime.GOMAXPROCS(0))}
	for range runtime.GOMAXPROCS(0) {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			for c := range v.jobs {
				for i := range c.recs {
					v.check(c.start+i, &c.recs[i], &c.out[i])
				}
			}
		}()
	}
	return v
}

// Add queues the next record of the run.
func (v *Verifier) Add(r Record) {
	if v.cur == nil {
		start := 0
		if n := len(v.done); n > 0 {
			start = v.done[n-1].start + len(v.done[n-1].recs)
		}
		v.cur = &chunk{start: start, recs: make([]Record, 0, chunkSize)}
	}
	v.cur.recs = append(v.cur.recs, r)
	if len(v.cur.recs) == chunkSize {
		v.flush()
	}
}

func (v *Verifier) flush() {
	c := v.cur
	v.cur = nil
	c.out = make([]checked, len(c.recs))
	v.done = append(v.done, c)
	v.jobs <- c
}

// ReadVerified reads a run and verifies it while it is read (Verifier),
// with keys (nil skips signatures). A run with no events is ErrNoRun.
func (l *Ledger) ReadVerified(ctx context.Context, run string, keys Keys) (*Verified, error) {
	ver := NewVerifier(run, keys)
	err := l.Scan(ctx, run, func(r Record) error {
		ver.Add(r)
		return nil
	})
	v := ver.Finish()
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Finish waits for the checks and links the records into the verdict.
func (v *Verifier) Finish() *Verified {
	if v.cur != nil {
		v.flush()
	}
	close(v.jobs)
	v.wg.Wait()
	n := 0
	for _, c := range v.done {
		n += len(c.out)
	}
	res := &Verified{Verification: Verification{RunID: v.run, Events: n, Chain: ChainIntact, Valid: n}, evs: make([]Entry, 0, n)}
	prev := schemas.GenesisHash
	var sigBreak *Link
	sigAt := 0
	checkedSigs, noKey := 0, map[string]int{}
	pos := 0
	for _, c := range v.done {
		for i := range c.out {
			r := &c.out[i]
			pos++
			res.evs = append(res.evs, r.Entry)
			if res.Broken != nil {
				continue
			}
			if problem := r.check.Linked(prev, uint64(pos)); problem != "" {
				e := r.check.Error(uint64(pos), r.StreamSeq, problem)
				res.Broken = &Link{Seq: e.Seq, StreamSeq: e.StreamSeq, Type: e.Type, HopID: e.HopID, Kind: "chain", Problem: problem}
				res.Chain, res.Valid = ChainBroken, pos-1
				continue
			}
			prev = r.check.Hash
			if sigBreak != nil {
				continue
			}
			switch {
			case r.sigProblem != "":
				sigBreak = &Link{Seq: uint64(pos), StreamSeq: r.StreamSeq, Type: r.Event.Type, HopID: r.Event.HopID, Kind: "signature", Problem: r.sigProblem}
				sigAt = pos
			case r.sigChecked:
				checkedSigs++
			case r.sigNoKey != "":
				noKey[r.sigNoKey]++
			}
		}
	}
	if sigBreak != nil && (res.Broken == nil || uint64(sigAt) < res.Broken.Seq) {
		res.Broken, res.Valid = sigBreak, sigAt-1
	}
	res.Checked = checkedSigs
	if len(noKey) > 0 {
		res.Unchecked = noKey
	}
	switch {
	case sigBreak != nil:
		res.Signatures = SigFailed
	case v.keys == nil || checkedSigs == 0 && len(noKey) > 0:
		res.Signatures = SigNotChecked
	case len(noKey) > 0:
		res.Signatures = SigPartial
	default:
		res.Signatures = SigVerified
	}
	res.HeadHash = schemas.GenesisHash
	if res.Valid > 0 {
		res.HeadHash = res.evs[res.Valid-1].Event.Hash
	}
	return res
}

// check runs CheckEvent (every check of Verify but the link to the
// previous event) and the signature check on one record.
func (v *Verifier) check(i int, rec *Record, out *checked) {
	out.StreamSeq = rec.StreamSeq
	var decoded *schemas.Event
	if rec.Event.Version == schemas.Version {
		decoded = &rec.Event
	}
	out.check = CheckEvent(v.run, uint64(i+1), rec.Raw, decoded)
	if out.check.Event != nil {
		out.Event = *out.check.Event
	}
	if out.check.Early != "" || out.check.Late != "" {
		return
	}
	out.Data = out.check.Data
	if v.keys != nil {
		v.checkSignature(out)
	}
}

// checkSignature checks the envelope an admitting event recorded against
// every key its sender has held.
func (v *Verifier) checkSignature(out *checked) {
	env, sender, err := AdmittedEnvelope(out.Event.Type, out.Data)
	if err != nil {
		out.sigProblem = err.Error()
		return
	}
	if env == nil {
		return
	}
	keys := v.keys[sender]
	if len(keys) == 0 {
		out.sigNoKey = sender
		return
	}
	for _, k := range keys {
		if err = schemas.VerifySignature(env, k); err == nil {
			out.sigChecked = true
			return
		}
	}
	out.sigProblem = fmt.Sprintf("envelope from %q: %v", sender, err)
}

// Printable makes ledger text safe to print on a terminal: invalid UTF-8
// is replaced, newlines and tabs are shown as \n and \t, and every other
// control or format character (escape sequences, bidi overrides) as \u
// escapes.
func Printable(s string) string {
	ok := true
	for _, c := range s {
		if c == utf8.RuneError || unicode.IsControl(c) || unicode.Is(unicode.Cf, c) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, c := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case unicode.IsControl(c) || unicode.Is(unicode.Cf, c):
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}
