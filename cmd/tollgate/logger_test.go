package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestLoggerFlags: --log-format json writes one JSON object a line,
// --log-level filters, and bad values are refused with the choices.
func TestLoggerFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, out string)
	}{
		{name: "json info", args: []string{"--log-format", "json"}, check: func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 {
				t.Fatalf("want the info line only:\n%s", out)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || rec["msg"] != "reloaded" || rec["by"] != "SIGHUP" {
				t.Fatalf("%v %v", rec, err)
			}
		}},
		{name: "text debug", args: []string{"--log-level", "debug"}, check: func(t *testing.T, out string) {
			if !strings.Contains(out, `msg="hop denied"`) || !strings.Contains(out, "msg=reloaded by=SIGHUP") {
				t.Fatalf("%s", out)
			}
		}},
		{name: "warn", args: []string{"--log-level", "warn"}, check: func(t *testing.T, out string) {
			if out != "" {
				t.Fatalf("%s", out)
			}
		}},
		{name: "bad format", args: []string{"--log-format", "xml"}, wantErr: "want text or json"},
		{name: "bad level", args: []string{"--log-level", "loud"}, wantErr: "want debug, info, warn or error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			if err := root.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			root.SetErr(&buf)
			log, err := logger(root)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hop denied", "run", "r1")
			log.Info("reloaded", "by", "SIGHUP")
			tt.check(t, buf.String())
		})
	}
}
