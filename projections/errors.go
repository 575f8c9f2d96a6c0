package projections

import (
	"errors"

	"github.com/tollgate/tollgate/projections/internal/store"
)

// Sentinel errors. Callers test them with errors.Is; the errors returned
// wrap them with what was being done.
var (
	// ErrStarted is returned by Start on a projector that was started
	// before; create a new one to start again.
	ErrStarted = errors.New("projections: projector already started")
	// ErrNotStarted is returned by Stop on a projector never started.
	ErrNotStarted = errors.New("projections: projector not started")
	// ErrNoConsumer means the config names no durable consumer where one
	// is needed: to project (New) or to ask for lag (ConsumerLag,
	// GetStatus with a ledger). The gateway's is broker.ProjectorConsumer.
	ErrNoConsumer = errors.New("projections: no durable consumer named")
	// ErrMismatch means a rebuild finished but the events it holds differ
	// in number from the ledger's.
	ErrMismatch = errors.New("projections: rebuilt events do not match the ledger")
	// ErrNoProjection means the database has no projection tables yet.
	ErrNoProjection = errors.New("projections: the database has no projection yet (run `tollgate projections migrate` or a projector)")
	// ErrSchemaNewer means the database was migrated by a newer Tollgate
	// than this one: its schema has versions this build does not know.
	ErrSchemaNewer = store.ErrSchemaNewer
	// ErrDatabaseName means a database name is not a plain identifier
	// (Config.Validate wraps it).
	ErrDatabaseName = store.ErrDatabaseName
)
