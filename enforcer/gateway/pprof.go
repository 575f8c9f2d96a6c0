package gateway

import (
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"
)

// mountPprof serves Go's runtime profiles (net/http/pprof) on the admin
// listener under /debug/pprof/, for operators who present
// admin.pprof_token as a bearer token. Without a token nothing is mounted:
// a heap profile names the code paths that hold memory, and a CPU profile
// costs the gateway while it runs.
func (g *Gateway) mountPprof() {
	tok := g.cfg.Admin.PprofToken
	if tok == "" || g.admin == nil {
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
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(tok)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate admin"`)
			http.Error(w, "pprof: present admin.pprof_token as a bearer token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
}
