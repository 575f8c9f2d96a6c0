package runtree

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// A copy of a run is its ledger events exactly as stored, one per line
// (JSON Lines): what `tollgate runs export` writes and `tollgate replay
// --file` reads. Stored events are compact JSON, so none contains a
// newline.

// MaxLine bounds one line of a copy.
const MaxLine = 64 << 20

// WriteJSONL writes records as a copy: each record's Raw bytes and a
// newline.
func WriteJSONL(w io.Writer, recs []ledger.Record) error {
	bw := bufio.NewWriter(w)
	for _, r := range recs {
		if bytes.IndexByte(r.Raw, '\n') >= 0 {
			return fmt.Errorf("event %d of run %s contains a newline: not a stored event", r.Event.Seq, r.Event.RunID)
		}
		if _, err := bw.Write(r.Raw); err != nil {
			return err
		}
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Export writes the copy of a run read from the ledger to w, as stored. It
// returns how many events it wrote and the hash of the last, the head the
// ledger vouches for. A run with no events is ledger.ErrNoRun.
func Export(ctx context.Context, l *ledger.Ledger, run string, w io.Writer) (n int, head string, err error) {
	var buf []ledger.Record
	flush := func() error {
		err := WriteJSONL(w, buf)
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
	if err != nil {
		return n, head, err
	}
	return n, head, flush()
}

// ReadJSONL reads a copy of a run. It returns the records undecoded (Raw
// only, as Verify takes them), so that any line, however damaged, is
// reported by Verify as a broken link at its position rather than stopping
// the read; blank lines and a trailing carriage return are ignored. run is
// the run id of the first line that decodes, "" if none does.
func ReadJSONL(r io.Reader) (recs []ledger.Record, run string, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if len(line) > MaxLine {
			return nil, "", fmt.Errorf("line %d is longer than %d bytes: not a ledger copy", n, MaxLine)
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
			recs = append(recs, ledger.Record{Raw: bytes.Clone(line)})
			if run == "" {
				if ev, err := schemas.DecodeEvent(line); err == nil {
					run = ev.RunID
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return recs, run, nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read line %d: %w", n, err)
		}
	}
}

// ReadCopy reads the copy of a run in the file at path, or in stdin when
// path is "-" (see ReadJSONL). A copy without events is an error.
func ReadCopy(path string, stdin io.Reader) (recs []ledger.Record, run string, err error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		r = f
	}
	if recs, run, err = ReadJSONL(r); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, "", fmt.Errorf("%s holds no events", path)
	}
	return recs, run, nil
}

// VerifyCopy reads the copy of a run (ReadCopy) and verifies it with keys
// (nil skips signatures) as a copy of run, or, when run is empty, of the
// run its first readable event names.
func VerifyCopy(path string, stdin io.Reader, run string, keys ledger.Keys) (*ledger.Verified, error) {
	recs, fileRun, err := ReadCopy(path, stdin)
	if err != nil {
		return nil, err
	}
	if run == "" {
		if run = fileRun; run == "" {
			return nil, fmt.Errorf("%s: no line is a readable ledger event; name the run to verify it against", path)
		}
	}
	return ledger.Verify(run, recs, keys), nil
}

// readLine reads up to and including the next newline, giving up past
// MaxLine.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) || len(out) > MaxLine {
			return out, err
		}
	}
}
