package broker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// VerifyControl checks a signed control request for the command cmd
// (schemas.CmdHalt, CmdApprove, CmdReload, CmdQuotaStatus) from the
// operator by, whose registered public key is pub (empty: not a registered
// operator): the signature over data is that key's, the request's "cmd"
// member names cmd (a request signed for another command, or for none as
// requests before commands were bound, is refused: every command shares
// one signing context), and sentAt is within window of now.
func VerifyControl(cmd, by, pub string, data []byte, sentAt, now time.Time, window time.Duration) error {
	if pub == "" {
		return fmt.Errorf("%q is not a registered operator", by)
	}
	key, err := ParsePublicKey(pub)
	if err != nil {
		return fmt.Errorf("operator %q: %w", by, err)
	}
	if err := schemas.VerifyObject(data, schemas.ControlSigningContext, key); err != nil {
		return fmt.Errorf("operator %q: %w", by, err)
	}
	// The same decoder (encoding/json) as the schemas.Decode*Request
	// functions, so that this reads the cmd they would.
	var signed struct {
		Cmd string `json:"cmd"`
	}
	if err := json.Unmarshal(data, &signed); err != nil {
		return fmt.Errorf("operator %q: %w: %w", by, schemas.ErrMalformed, err)
	}
	switch signed.Cmd {
	case cmd:
	case "":
		return fmt.Errorf("operator %q: %w: the request names no cmd, so it is not signed for %q "+
			"(a request from a tollgate before commands were bound into control requests: send it again with this one)",
			by, schemas.ErrSignature, cmd)
	default:
		return fmt.Errorf("operator %q: %w: the request is signed for command %q, not %q", by, schemas.ErrSignature, signed.Cmd, cmd)
	}
	if skew := now.Sub(sentAt).Abs(); skew > window {
		return fmt.Errorf("sent_at is %s off (window %s)", skew.Round(time.Second), window)
	}
	return nil
}
