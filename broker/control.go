package broker

import (
	"fmt"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// VerifyControl checks a signed control request (halt, approve, reload)
// from the operator by, whose registered public key is pub (empty: not a
// registered operator): the signature over data is that key's, and sentAt
// is within window of now.
func VerifyControl(by, pub string, data []byte, sentAt, now time.Time, window time.Duration) error {
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
	if skew := now.Sub(sentAt).Abs(); skew > window {
		return fmt.Errorf("sent_at is %s off (window %s)", skew.Round(time.Second), window)
	}
	return nil
}
