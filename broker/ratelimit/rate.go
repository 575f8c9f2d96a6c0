// Package ratelimit keeps per-agent token buckets in a NATS KV bucket, so
// that a limit holds across every enforcer instance: each take is a
// compare-and-set on the agent's key, and a conflicting writer retries
// with the fresh value. Nothing is kept in a home-made store.
package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a number of events per period, written "60/min".
type Rate struct {
	Count  int
	Period time.Duration
}

// Unlimited reports whether the rate sets no limit.
func (r Rate) Unlimited() bool { return r.Count <= 0 || r.Period <= 0 }

// String writes the rate as ParseRate reads it.
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	for unit, d := range units {
		if r.Period == d {
			return fmt.Sprintf("%d/%s", r.Count, unit)
		}
	}
	return fmt.Sprintf("%d/%s", r.Count, r.Period)
}

var units = map[string]time.Duration{"s": time.Second, "min": time.Minute, "h": time.Hour}

// ParseRate reads "60/min", "5/s", "1000/h", "10/30s" or "unlimited".
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return Rate{}, nil
	case "unlimited":
		// Explicitly unlimited, unlike the zero Rate, which leaves a
		// default in place.
		return Rate{Count: -1}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want <count>/<period>, like 60/min", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count <= 0 {
		return Rate{}, fmt.Errorf("rate %q: count must be a positive integer", s)
	}
	per = strings.TrimSpace(per)
	period, ok := units[per]
	if !ok {
		if period, err = time.ParseDuration(per); err != nil || period <= 0 {
			return Rate{}, fmt.Errorf("rate %q: period must be s, min, h or a duration like 30s", s)
		}
	}
	return Rate{Count: count, Period: period}, nil
}

// UnmarshalText lets configs hold a rate as "60/min".
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText writes the rate as "60/min".
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
