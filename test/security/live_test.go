package security_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/projections/projectionstest"
)

// cli runs the tollgate binary in the gateway's folder and returns its
// standard output, its standard error and its error.
func (g *gw) cli(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tollgateBin, args...)
	cmd.Dir = g.dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// TestLiveReads: every read command works against a running serve with an
// operator's key, given as --nats URL --creds FILE or as --config FILE
// --creds FILE (the config finds the running gateway); a key that is not
// an operator's fails at once, naming whose key it is.
func TestLiveReads(t *testing.T) {
	for _, v := range variants {
		t.Run(string(v), func(t *testing.T) { testLiveReads(t, v) })
	}
}

func testLiveReads(t *testing.T, v variant) {
	{
		db := projectionstest.New(t)
		g := startGateway(t, v, setup{clickhouse: map[string]any{"dsn": db.Config.DSN, "database": db.Name, "flush_interval": "100ms"}})
		run := g.cast.legit(t)
		ops := filepath.Join(g.dir, "ops.nk")
		where := map[string][]string{
			"nats":   {"--nats", g.url, "--creds", ops},
			"config": {"--config", g.config, "--creds", ops},
		}
		for name, src := range where {
			t.Run(name, func(t *testing.T) {
				out, errOut, err := g.cli(t, append([]string{"runs", "list", "--json"}, src...)...)
				if err != nil {
					t.Fatalf("runs list: %v\n%s", err, errOut)
				}
				var runs []struct {
					RunID string `json:"run_id"`
				}
				if err := json.Unmarshal([]byte(out), &runs); err != nil {
					t.Fatalf("runs list --json: %v\n%s", err, out)
				}
				found := false
				for _, r := range runs {
					found = found || r.RunID == run
				}
				if !found {
					t.Fatalf("runs list does not show run %s:\n%s", run, out)
				}
				out, errOut, err = g.cli(t, append([]string{"replay", run}, src...)...)
				if err != nil || !strings.Contains(out, "orchestrator") || !strings.Contains(out, "research") {
					t.Fatalf("replay: %v\n%s%s", err, out, errOut)
				}
				out, errOut, err = g.cli(t, append([]string{"runs", "export", run}, src...)...)
				if err != nil || strings.Count(out, "\n") < 4 || !strings.Contains(errOut, "exported") {
					t.Fatalf("runs export: %v\n%s%s", err, out, errOut)
				}
				out, errOut, err = g.cli(t, append([]string{"projections", "status", "--json", "--clickhouse", db.Config.DSN, "--database", db.Name}, src...)...)
				if err != nil || !strings.Contains(out, `"consumer"`) {
					t.Fatalf("projections status: %v\n%s%s", err, out, errOut)
				}
			})
		}
		// report reads what serve's projector wrote to ClickHouse.
		brokertest.Eventually(t, 30*time.Second, "report cost shows the run's agents", func() bool {
			out, _, err := g.cli(t, "report", "cost", "--json", "--run", run, "--clickhouse", db.Config.DSN, "--database", db.Name)
			return err == nil && strings.Contains(out, "orchestrator") && strings.Contains(out, "research")
		})

		t.Run("WrongKey", func(t *testing.T) {
			start := time.Now()
			_, errOut, err := g.cli(t, "runs", "list", "--nats", g.url, "--creds", filepath.Join(g.dir, "research.nk"))
			if err == nil || !strings.Contains(errOut, "identity research's key") {
				t.Fatalf("runs list with an agent's key: %v\n%s", err, errOut)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("the wrong key took %s to be refused", d)
			}
			_, err = agent.Connect(testCtx(t, 10*time.Second), agent.Config{ID: "writer", Key: g.keys["research"], URL: g.url})
			if !errors.Is(err, broker.ErrWrongKey) || !strings.Contains(err.Error(), "identity research's key") {
				t.Fatalf("an agent client with another identity's key: %v", err)
			}
			_, errOut, err = g.cli(t, "run", "halt", run, "--nats", g.url, "--operator", "ops2", "--key", ops, "--reason", "x")
			if err == nil || !strings.Contains(errOut, "operator ops's key") || !strings.Contains(errOut, "not operator ops2's") {
				t.Fatalf("halt with another operator's key: %v\n%s", err, errOut)
			}
		})
	}
}
