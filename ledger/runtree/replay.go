package runtree

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/tollgate/tollgate/ledger"
)

// Formats of a replay (tollgate replay --format).
const (
	FormatText    = "text"
	FormatJSON    = "json"
	FormatDOT     = "dot"
	FormatMermaid = "mermaid"
)

// ReplayOptions shape WriteReplay.
type ReplayOptions struct {
	// Format is FormatText (default), FormatJSON, FormatDOT or
	// FormatMermaid.
	Format string
	// AsOf, when set, shows the run as it stood after that event.
	AsOf uint64
	// Payloads adds the A2A message in and the result out of every hop.
	Payloads bool
}

// replayJSON is a replay as JSON: the run (as the demo prints it), its
// verification and its call graph.
type replayJSON struct {
	*Run
	Verification *ledger.Verification `json:"verification"`
	Graph        *Graph               `json:"graph"`
}

// WriteReplay writes a verified run: as text, its tree in time order and
// the verdict (a run that fails verification shows the events before its
// first broken link); as JSON, the tree with its verification and call
// graph; or the call graph as DOT or Mermaid.
func WriteReplay(w io.Writer, v *ledger.Verified, o ReplayOptions) error {
	var tree *Run
	var err error
	if o.AsOf != 0 {
		tree, err = FromVerifiedAsOf(v, o.AsOf)
	} else {
		tree, err = FromVerified(v)
	}
	if err != nil {
		return err
	}
	if o.Payloads {
		tree.LoadPayloads()
	}
	switch o.Format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(replayJSON{Run: tree, Verification: &v.Verification, Graph: tree.Graph()})
	case FormatDOT:
		return tree.WriteDOT(w)
	case FormatMermaid:
		return tree.WriteMermaid(w)
	}
	if !v.OK() {
		fmt.Fprintf(w, "LEDGER VERIFICATION FAILED at event %d; the tree shows the first %d events only.\n\n", v.Broken.Seq, v.Valid)
	}
	if err := tree.WriteTextOptions(w, TextOptions{Payloads: o.Payloads}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "\nLedger: %d events, head %.16s…, %s\n", v.Events, v.HeadHash, v.Summary())
	return err
}
