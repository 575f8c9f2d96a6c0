package schemas

import (
	"crypto/rand"
	"fmt"
	"regexp"
	"time"

	"github.com/oklog/ulid/v2"
)

// Identifier rules. Agent, user, tool and model ids become NATS subject tokens,
// consumer names and inbox prefixes, so they are lower-case and short. Run and
// hop ids become subject tokens too; generated ones are ULIDs, but any token
// that matches IDPattern is accepted so that clients in other languages can
// bring their own.
var (
	principalIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	idRe          = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$`)
)

// PrincipalIDPattern is the pattern every agent, user, tool and model id matches.
const PrincipalIDPattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

// IDPattern is the pattern every run and hop id matches.
const IDPattern = `^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$`

// ValidPrincipalID reports whether id can name an agent, user, tool or model.
func ValidPrincipalID(id string) bool { return principalIDRe.MatchString(id) }

// ValidID reports whether id can name a run or a hop.
func ValidID(id string) bool { return idRe.MatchString(id) }

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
