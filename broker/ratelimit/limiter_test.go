package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/broker/ratelimit"
)

func TestParseRate(t *testing.T) {
	cases := []struct {
		in      string
		want    ratelimit.Rate
		wantErr bool
	}{
		{"60/min", ratelimit.Rate{Count: 60, Period: time.Minute}, false},
		{"5/s", ratelimit.Rate{Count: 5, Period: time.Second}, false},
		{"10/30s", ratelimit.Rate{Count: 10, Period: 30 * time.Second}, false},
		{"unlimited", ratelimit.Rate{Count: -1}, false},
		{"", ratelimit.Rate{}, false},
		{"60", ratelimit.Rate{}, true},
		{"-1/min", ratelimit.Rate{}, true},
		{"5/fortnight", ratelimit.Rate{}, true},
	}
	for _, tc := range cases {
		got, err := ratelimit.ParseRate(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if s := (ratelimit.Rate{Count: 60, Period: time.Minute}).String(); s != "60/min" {
		t.Errorf("String = %q", s)
	}
}

func limiters(t *testing.T, n int) []*ratelimit.Limiter {
	t.Helper()
	bus := brokertest.Start(t, brokertest.Options{})
	ctx := context.Background()
	var out []*ratelimit.Limiter
	for range n {
		// Each limiter has its own bucket handle, as separate enforcer
		// instances would.
		kv, err := bus.JS.KeyValue(ctx, bus.Subjects.Bucket(broker.BucketRate))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ratelimit.New(kv))
	}
	return out
}

func TestBucketRefills(t *testing.T) {
	l := limiters(t, 1)[0]
	ctx := context.Background()
	rate := ratelimit.Rate{Count: 3, Period: 3 * time.Second}
	now := time.Now()
	for i := range 3 {
		d, err := l.Take(ctx, "research", rate, now)
		if err != nil || !d.Allowed {
			t.Fatalf("take %d: %+v %v", i, d, err)
		}
	}
	d, err := l.Take(ctx, "research", rate, now)
	if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > time.Second {
		t.Fatalf("4th take in the same instant: %+v %v; want a denial with a retry-after of at most 1s", d, err)
	}
	// One second later, one token has come back, and only one.
	later := now.Add(time.Second)
	if d, _ := l.Take(ctx, "research", rate, later); !d.Allowed {
		t.Fatalf("after refill: %+v", d)
	}
	if d, _ := l.Take(ctx, "research", rate, later); d.Allowed {
		t.Fatalf("second take after one refill: %+v", d)
	}
	// Other keys are independent.
	if d, _ := l.Take(ctx, "writer", rate, now); !d.Allowed {
		t.Fatal("writer limited by research's bucket")
	}
}

// TestLimitHoldsAcrossInstances: two limiters (two enforcer instances)
// hammering the same key concurrently admit exactly the bucket's size.
func TestLimitHoldsAcrossInstances(t *testing.T) {
	ls := limiters(t, 2)
	rate := ratelimit.Rate{Count: 25, Period: time.Hour}
	now := time.Now()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for _, l := range ls {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					d, err := l.Take(context.Background(), "research", rate, now)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						allowed.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	if got := allowed.Load(); got != 25 {
		t.Fatalf("admitted %d of 160 takes, want exactly the bucket's 25", got)
	}
}

// TestHighRatesLeaseTokens: at a high rate one store round trip serves many
// takes, the limit still holds, and huge rates do not break the arithmetic.
func TestHighRatesLeaseTokens(t *testing.T) {
	ls := limiters(t, 2)
	ctx := context.Background()
	now := time.Now()
	rate := ratelimit.Rate{Count: 1000, Period: time.Second} // leases 100 tokens at a time
	allowed := 0
	for i := range 2000 {
		d, err := ls[i%2].Take(ctx, "orchestrator", rate, now)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed > 1000 || allowed < 900 {
		t.Fatalf("two instances admitted %d of 2000 takes in one instant at 1000/s, want at most 1000 (and nearly all of them)", allowed)
	}
	huge := ratelimit.Rate{Count: 1 << 30, Period: time.Second}
	for range 100 {
		if d, err := ls[0].Take(ctx, "fast", huge, now); err != nil || !d.Allowed {
			t.Fatalf("huge rate: %+v %v", d, err)
		}
	}
}
