package schemas

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// Identifier rules. Agent, user, tool and model ids become NATS subject tokens,
// consumer names and inbox prefixes, so they are lower-case and short. Run and
// hop ids become subject tokens too; generated ones are ULIDs, but any token
// that matches IDPattern is accepted so that clients in other languages can
// bring their own. (The checks below are the patterns written out: they run
// on every submission.)

// PrincipalIDPattern is the pattern every agent, user, tool and model id matches.
const PrincipalIDPattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

// IDPattern is the pattern every run and hop id matches.
const IDPattern = `^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$`

// ValidPrincipalID reports whether id can name an agent, user, tool or model
// (PrincipalIDPattern).
func ValidPrincipalID(id string) bool {
	if len(id) == 0 || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		lowerOrDigit := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !lowerOrDigit && (i == 0 || c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// ValidID reports whether id can name a run or a hop (IDPattern).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// CheckPrincipalID returns an error naming what is wrong with id, or nil.
func CheckPrincipalID(id string) error {
	if !ValidPrincipalID(id) {
		return fmt.Errorf("%q is not a valid id (want %s)", id, PrincipalIDPattern)
	}
	return nil
}

// NewID returns a fresh ULID: 26 characters, sortable by creation time.
func NewID() string {
	return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String()
}
