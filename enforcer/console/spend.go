package console

import (
	"context"
	"net/http"
	"time"
)

// Spend answers the spend charts from ClickHouse (the projections'
// queries); the gateway provides it when clickhouse.dsn is set.
type Spend interface {
	// SpendOverTime returns the cost per key of dimension (agent, team,
	// workflow, principal) per time bucket since since, with the SQL it ran.
	SpendOverTime(ctx context.Context, dimension string, since time.Time) (*SpendReport, error)
}

// SpendReport is a spend chart's data.
type SpendReport struct {
	Dimension string `json:"dimension"`
	// SQL is the query that was run, for analysts to take away.
	SQL string `json:"sql"`
	// Bucket is the width of a time bucket in seconds.
	Bucket int64      `json:"bucket_seconds"`
	Rows   []SpendRow `json:"rows"`
}

// SpendRow is the spend of one key in one time bucket.
type SpendRow struct {
	At      time.Time `json:"at"`
	Key     string    `json:"key"`
	Hops    uint64    `json:"hops"`
	Tokens  int64     `json:"tokens"`
	CostUSD float64   `json:"cost_usd"`
}

func (s *Server) spend(w http.ResponseWriter, r *http.Request, _ *session) {
	if s.deps.Spend == nil {
		writeError(w, http.StatusNotFound, "spend charts need ClickHouse: set clickhouse.dsn in the gateway config")
		return
	}
	q := r.URL.Query()
	dim := q.Get("dimension")
	if dim == "" {
		dim = "agent"
	}
	since := time.Now().Add(-24 * time.Hour)
	if v := q.Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "since: want a duration such as 24h")
			return
		}
		since = time.Now().Add(-d)
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	rep, err := s.deps.Spend.SpendOverTime(ctx, dim, since)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
