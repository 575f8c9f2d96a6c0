package projections_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/projections"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     projections.Config
		wantErr []string // each must appear in the error
	}{
		{"defaults with a dsn", projections.Config{DSN: "clickhouse://127.0.0.1:19000"}, nil},
		{"database from the dsn", projections.Config{DSN: "clickhouse://127.0.0.1:19000/analytics"}, nil},
		{"no dsn", projections.Config{}, []string{"dsn is required"}},
		{"http dsn", projections.Config{DSN: "http://127.0.0.1:8123"}, []string{"native protocol"}},
		{"every problem at once", projections.Config{DSN: "clickhouse://h:1", Database: "bad-name", BatchSize: -1,
			FlushInterval: 10 * time.Second, AckWait: 5 * time.Second, Consumer: "no spaces", MaxRuns: -2},
			[]string{"database", "batch_size", "ack_wait", "consumer", "max_runs"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
