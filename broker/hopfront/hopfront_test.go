package hopfront_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/tollgate/tollgate/broker/hopfront"
)

func TestParentHop(t *testing.T) {
	for _, tc := range []struct {
		name, hop, run string
		wantErr        bool
	}{
		{"both", "01HOP", "01RUN", false},
		{"no hop", "", "01RUN", true},
		{"no run", "01HOP", "", true},
		{"hop not an id", "a.b", "01RUN", true},
		{"run not an id", "01HOP", "tg.>", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.hop != "" {
				h.Set(hopfront.ParentHopHeader, tc.hop)
			}
			if tc.run != "" {
				h.Set(hopfront.RunHeader, tc.run)
			}
			hop, run, err := hopfront.ParentHop(h)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, hopfront.ErrParentHop) {
				t.Fatalf("err %v does not wrap ErrParentHop", err)
			}
			if err == nil && (hop != tc.hop || run != tc.run) {
				t.Fatalf("got %s %s", hop, run)
			}
		})
	}
}
