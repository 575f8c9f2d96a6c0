package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/projections"
)

// spend answers the console's spend charts with the projections' reader,
// connected at the first chart asked for.
type spend struct {
	cfg projections.Config

	mu sync.Mutex
	r  *projections.Reader
}

func (s *spend) reader(ctx context.Context) (*projections.Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r != nil {
		return s.r, nil
	}
	r, err := projections.NewReader(ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	s.r = r
	return r, nil
}

// SpendOverTime implements console.Spend.
func (s *spend) SpendOverTime(ctx context.Context, dimension string, since time.Time) (*console.SpendReport, error) {
	r, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	bucket := projections.SpendBucket(time.Since(since))
	pts, sql, err := r.SpendOverTime(ctx, projections.Dimension(dimension), since, bucket)
	if err != nil {
		return nil, err
	}
	rep := &console.SpendReport{Dimension: dimension, SQL: sql, Bucket: int64(bucket / time.Second), Rows: []console.SpendRow{}}
	for _, p := range pts {
		rep.Rows = append(rep.Rows, console.SpendRow{At: p.At, Key: p.Key, Hops: p.Hops, Tokens: p.Tokens, CostUSD: p.CostUSD})
	}
	return rep, nil
}

func (s *spend) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r != nil {
		s.r.Close()
		s.r = nil
	}
}
