package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// SpendPoint is what one key of a dimension spent in one time bucket.
type SpendPoint struct {
	At      time.Time `json:"at"`
	Key     string    `json:"key"`
	Hops    uint64    `json:"hops"`
	Tokens  int64     `json:"tokens"`
	CostUSD float64   `json:"cost_usd"`
}

// SpendBucket picks the width of a spend chart's time buckets for a span:
// about 48 buckets, on whole minutes, hours or days.
func SpendBucket(span time.Duration) time.Duration {
	for _, b := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour} {
		if span/b <= 48 {
			return b
		}
	}
	return 7 * 24 * time.Hour
}

// SpendOverTime returns the spend per key of dim per time bucket since
// since, oldest bucket first, and the SQL it ran (the database named, the
// arguments inlined) for the reader to take away. Spend is counted as Cost
// counts it: what the callee reported, on allowed invokes.
func (r *Reader) SpendOverTime(ctx context.Context, dim Dimension, since time.Time, bucket time.Duration) ([]SpendPoint, string, error) {
	col, err := dim.column()
	if err != nil {
		return nil, "", err
	}
	secs := int64(bucket / time.Second)
	if secs < 1 {
		return nil, "", fmt.Errorf("spend bucket %s: want at least a second", bucket)
	}
	since = since.UTC().Truncate(time.Second)
	q := `
SELECT toDateTime(intDiv(toUInt32(opened_at), ` + fmt.Sprint(secs) + `) * ` + fmt.Sprint(secs) + `, 'UTC') AS bucket,
       ` + col + ` AS key, count() AS hop_count, sum(tokens) AS all_tokens, sum(cost_usd) AS total_cost
FROM {db}.hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed' AND opened_at >= ?
GROUP BY bucket, key
ORDER BY bucket, key
LIMIT 10000`
	shown := strings.TrimSpace(strings.Replace(r.st.SQL(q), "?", "toDateTime('"+since.Format(time.DateTime)+"', 'UTC')", 1))
	rows, err := r.st.Query(ctx, q, since)
	if err != nil {
		return nil, shown, err
	}
	defer rows.Close()
	var out []SpendPoint
	for rows.Next() {
		var p SpendPoint
		var cost decimal.Decimal
		if err := rows.Scan(&p.At, &p.Key, &p.Hops, &p.Tokens, &cost); err != nil {
			return nil, shown, fmt.Errorf("spend by %s over time: %w", dim, err)
		}
		p.At, p.CostUSD = p.At.UTC(), cost.InexactFloat64()
		out = append(out, p)
	}
	return out, shown, rows.Err()
}
