package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/deploy"
	"github.com/tollgate/tollgate/enforcer/demo"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/ledger"
)

var (
	buildOnce   sync.Once
	tollgateBin string
	buildErr    error
)

// tollgate builds the tollgate binary once per test binary.
func tollgate(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-cluster-")
		if err != nil {
			buildErr = err
			return
		}
		tollgateBin = filepath.Join(dir, "tollgate")
		if out, err := exec.Command("go", "build", "-o", tollgateBin, "github.com/tollgate/tollgate/cmd/tollgate").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build tollgate: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return tollgateBin
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeProcessesTakeOver runs two `tollgate serve` processes on one
// nats-server process with 4 run partitions (instances 0 and 1 of 2):
// the demo's runs complete in every partition; then the process holding
// partitions 1 and 3 is killed (SIGKILL: no unpin, no ack) and runs in
// those partitions complete on the other, whose pin the server now holds.
func TestServeProcessesTakeOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root := t.TempDir()
	cfg, keys, err := demo.Config(filepath.Join(root, "unused"))
	if err != nil {
		t.Fatal(err)
	}
	gwKey, _ := broker.NewKey()
	cfg.NATS = gateway.NATSConfig{Credentials: "gateway.nk", Partitions: partitions}
	cfg.Policies = []string{"policies/*.cedar"}
	cfg.Enforcer.Instances, cfg.Enforcer.PinnedTTL, cfg.Enforcer.AckWait = 2, 3*time.Second, 3*time.Second

	// Each process gets a folder of its own with the same config.
	write := func(dir string) {
		if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := broker.WriteSeed(filepath.Join(dir, "gateway.nk"), gwKey); err != nil {
			t.Fatal(err)
		}
		err := fs.WalkDir(deploy.Policies(), "policies", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(deploy.Policies(), path)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, path), b, 0o600)
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tollgate.yaml"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	natsDir := filepath.Join(root, "nats")
	write(natsDir)
	loaded, err := gateway.LoadConfig(filepath.Join(natsDir, "tollgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := gateway.AccountsConfig(loaded)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(natsDir, "accounts.conf"), []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := brokertest.StartExternal(t, natsDir, "include accounts.conf\n")
	cfg.NATS.URL = srv.URL

	serve := func(instance int) *exec.Cmd {
		dir := filepath.Join(root, "gw"+strconv.Itoa(instance))
		write(dir)
		cmd := exec.Command(tollgate(t), "serve", "-c", "tollgate.yaml", "--instance", strconv.Itoa(instance))
		cmd.Dir = dir
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("serve --instance %d:\n%s", instance, out.String())
			}
		})
		brokertest.Eventually(t, 60*time.Second, "serve started", func() bool { return strings.Contains(out.String(), "tollgate serving on") })
		return cmd
	}
	serve(0)
	one := serve(1)

	closeCast, err := demo.Serve(ctx, agent.Config{URL: srv.URL}, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeCast()
	user, err := agent.Connect(ctx, agent.Config{ID: demo.User, Key: keys[demo.User], URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	nc, err := broker.Connect(broker.ConnectConfig{URL: srv.URL, Key: gwKey, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subjects := broker.DefaultSubjects()
	l := ledger.New(js, subjects.Stream(broker.StreamLedger), subjects)
	pinOf := func(p int) string {
		c, err := js.Consumer(ctx, subjects.Stream(broker.StreamSubmit), broker.PartitionConsumer(broker.EnforcerConsumer, p))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil || len(info.PriorityGroups) != 1 {
			t.Fatalf("partition %d consumer: %+v %v", p, info, err)
		}
		return info.PriorityGroups[0].PinnedClientID
	}
	settle := func(p int) {
		t.Helper()
		r, err := user.Start(ctx, "orchestrator", agent.UserText("brief"), agent.WithRunID(runIn(p)))
		var denied *agent.DeniedError
		if err != nil && !errors.As(err, &denied) {
			t.Fatalf("run in partition %d: %v", p, err)
		}
		recs, err := demo.WaitSettled(ctx, l, r.RunID)
		if err != nil {
			t.Fatal(err)
		}
		checkLedger(t, r.RunID, recs, nil)
		if st, err := ledger.Fold(r.RunID, recs); err != nil || !st.Closed() {
			t.Fatalf("run %s in partition %d did not settle: %v", r.RunID, p, err)
		}
	}
	for p := range partitions {
		settle(p)
	}
	before := map[int]string{1: pinOf(1), 3: pinOf(3)}

	if err := one.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for _, p := range []int{1, 3} {
		settle(p)
		if after := pinOf(p); after == "" || after == before[p] {
			t.Fatalf("partition %d pinned to %q before the kill and %q after: it did not move", p, before[p], after)
		}
	}
	t.Logf("partitions 1 and 3 taken over; their runs settled %s after the kill", time.Since(killed).Round(time.Millisecond))
}
