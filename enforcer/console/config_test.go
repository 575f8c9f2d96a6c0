package console

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := HashToken("tgc_x")
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "empty", cfg: Config{}},
		{name: "good", cfg: Config{Tokens: []Token{{Name: "a", SHA256: good}}, TraceURL: "https://jaeger.example/trace/{trace_id}"}},
		{name: "every problem at once", cfg: Config{
			Tokens:     []Token{{Name: "", SHA256: good}, {Name: "a", SHA256: "tgc_x"}, {Name: "a", SHA256: good}},
			TraceURL:   "javascript:alert(1)",
			SessionTTL: -1,
		}, wantErr: []string{"tokens[0]: a name is required", "tokens[1] (a): sha256 must be 64 hex digits", `tokens[2]: name "a" given twice`,
			"trace_url", "session_ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestTokens(t *testing.T) {
	a, ha, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := NewToken()
	if a == b || HashToken(a) != ha || len(ha) != 64 || HashToken(a) == HashToken(b) {
		t.Fatalf("tokens %q %q hash %q", a, b, ha)
	}
}
