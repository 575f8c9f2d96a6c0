package gateway

import (
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/tollgate/tollgate/enforcer/console"
)

// mountPprof serves Go's runtime profiles (net/http/pprof) on the admin
// listener under /debug/pprof/, for operators who present the token whose
// hash is admin.pprof_token_sha256 as a bearer token (hashed as console
// tokens are, console.HashToken). Without one nothing is mounted:
// a heap profile names the code paths that hold memory, and a CPU profile
// costs the gateway while it runs.
func (g *Gateway) mountPprof() {
	want := strings.ToLower(g.cfg.Admin.PprofTokenSHA256)
	if want == "" || g.admin == nil {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	g.admin.mux.Handle("/debug/pprof/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(console.HashToken(strings.TrimSpace(got))), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate admin"`)
			http.Error(w, "pprof: present the token of admin.pprof_token_sha256 as a bearer token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
}
