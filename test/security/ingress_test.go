package security_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker/a2ahttp"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/schemas"
)

// TestForgedIngressEnvelope: serve with its HTTP ingress, attacked from
// outside. An agent cannot pass its own submissions off as the ingress's
// (via "a2a-ingress" signed with its own key, or unsigned): denied
// identity. Over HTTP, with a real token minted by `tollgate agent token`,
// a user cannot name another identity's task as the parent of its call:
// an A2A permission error with reason parent, and no hop is admitted into
// the task's run.
func TestForgedIngressEnvelope(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	g := startGateway(t, embedded, setup{extra: func(t *testing.T, g *gw) {
		g.cfg.HTTP = map[string]string{"listen": httpAddr, "keys": "http-keys"}
	}})
	mallory := g.attacker(t, "mallory")
	tk := mallory.delegatedTo(t)

	forged := func() *schemas.Envelope {
		env := mallory.envelope(schemas.KindInvoke)
		env.Via = schemas.ViaIngress
		env.RunID, env.ParentHopID, env.To, env.Message, env.HopKey = tk.Run, tk.Hop, "research", message("as the ingress"), schemas.NewID()
		env.HopID = env.DerivedHopID()
		return env
	}
	t.Run("SignedWithOwnKey", func(t *testing.T) {
		mallory.wantDenied(t, tk.Run, mallory.sign(t, forged()), nil, schemas.ReasonIdentity, "ingress")
	})
	t.Run("Unsigned", func(t *testing.T) {
		b, err := forged().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		mallory.wantDenied(t, tk.Run, b, nil, schemas.ReasonIdentity, "ingress")
	})

	t.Run("AnotherIdentitysTaskAsParent", func(t *testing.T) {
		out, err := exec.Command(tollgateBin, "agent", "token", "eve", "-c", g.config, "--json").CombinedOutput()
		if err != nil {
			t.Fatalf("tollgate agent token eve: %v\n%s", err, out)
		}
		var tok struct{ Token string }
		if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
			t.Fatalf("token output %q: %v", out, err)
		}
		before := countEvents(g.ops.verified(t, tk.Run), schemas.EventHopAllowed)
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":%q,"role":"ROLE_USER","parts":[{"text":"mine now"}],"metadata":{%q:%q}}}}`,
			schemas.NewID(), a2ahttp.ParentTaskKey, string(a2ahttp.TaskID(tk.Run, tk.Hop)))
		req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/research/", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("A2A-Version", "1.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct {
			Error *struct {
				Code    int
				Message string
			}
		}
		if err := json.Unmarshal(b, &r); err != nil || r.Error == nil || r.Error.Code != -31403 || !strings.Contains(r.Error.Message, "(parent)") {
			t.Fatalf("eve's call under mallory's task: %s", b)
		}
		if after := countEvents(g.ops.verified(t, tk.Run), schemas.EventHopAllowed); after != before {
			t.Fatalf("a hop was admitted into mallory's run: %d -> %d", before, after)
		}
	})
}
