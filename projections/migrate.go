package projections

import (
	"context"

	"github.com/tollgate/tollgate/projections/internal/store"
)

// Migration is one versioned step of the projection's schema.
type Migration struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
}

// Migrate creates the database when missing and applies, in order, the
// migrations it lacks. It returns those it applied: none when the schema is
// up to date. Every statement is safe to repeat, so an interrupted
// migration is finished by the next call. The projector migrates at start.
func Migrate(ctx context.Context, cfg Config) ([]Migration, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DSN, cfg.Database)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	return migrations(applied), err
}

// Migrations lists every migration this build knows, in order.
func Migrations() ([]Migration, error) {
	all, err := store.Migrations()
	return migrations(all), err
}

func migrations(ms []store.Migration) []Migration {
	out := make([]Migration, len(ms))
	for i, m := range ms {
		out[i] = Migration{Version: m.Version, Name: m.Name}
	}
	return out
}
