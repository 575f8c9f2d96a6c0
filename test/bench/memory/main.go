// Command memory measures the resident memory of a `tollgate serve`
// process (embedded NATS) while one user starts many distinct runs, each
// delivered to an entry agent that never answers: every run stays open and
// the enforcer's run cache fills. It prints the serve process's RSS as
// the runs go in and the enforcer's own stats from its log.
//
//	go run ./test/bench/memory -runs 100000 -cache-bytes 67108864
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/console"
	"github.com/tollgate/tollgate/schemas"
)

func main() {
	runs := flag.Int("runs", 100000, "distinct runs to start")
	cacheBytes := flag.Int("cache-bytes", 0, "enforcer.run_cache_bytes (0: the default)")
	heapDir := flag.String("heap-dir", "", "write serve's heap profile (admin pprof) at every step to DIR/heap-<runs>.pb.gz")
	flag.Parse()
	if err := measure(*runs, *cacheBytes, *heapDir); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
}

func measure(runs, cacheBytes int, heapDir string) error {
	dir, err := os.MkdirTemp("", "tollgate-memory-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "tollgate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tollgate").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	keys := map[string]string{}
	pubs := map[string]string{}
	for _, id := range []string{"tomas", "orchestrator"} {
		kp, err := broker.NewKey()
		if err != nil {
			return err
		}
		keys[id] = filepath.Join(dir, id+".nk")
		if err := broker.WriteSeed(keys[id], kp); err != nil {
			return err
		}
		pubs[id], _ = kp.PublicKey()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	policy := filepath.Join(dir, "p.cedar")
	if err := os.WriteFile(policy, []byte(`permit (principal, action, resource);`), 0o600); err != nil {
		return err
	}
	admin := ""
	const pprofToken = "memory-bench-pprof-token"
	adminAddr := ""
	if heapDir != "" {
		if err := os.MkdirAll(heapDir, 0o755); err != nil {
			return err
		}
		al, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		adminAddr = al.Addr().String()
		al.Close()
		admin = fmt.Sprintf("admin: {listen: %q, pprof_token_sha256: %q}\n", adminAddr, console.HashToken(pprofToken))
	}
	cache := ""
	if cacheBytes > 0 {
		cache = fmt.Sprintf("  run_cache_bytes: %d\n", cacheBytes)
	}
	cfg := fmt.Sprintf(`nats:
  data_dir: %s
  listen: 127.0.0.1:%d
users:
  - {id: tomas, public_key: %s}
agents:
  - {id: orchestrator, tags: [entry], public_key: %s, timeout_seconds: 3600}
policies: [p.cedar]
per_principal: {run_rate: unlimited}
per_agent: {reject_rate_limit: unlimited}
run_limits: {max_wall_clock_seconds: 3600}
%senforcer:
%s`, filepath.Join(dir, "data"), port, pubs["tomas"], pubs["orchestrator"], admin, cache)
	if cache == "" {
		cfg = strings.TrimSuffix(cfg, "enforcer:\n")
	}
	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	serve := exec.Command(bin, "serve", "--config", path)
	stderr, _ := serve.StderrPipe()
	if err := serve.Start(); err != nil {
		return err
	}
	defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "level=ERROR") {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
	}()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	kp, err := broker.LoadSeed(keys["tomas"])
	if err != nil {
		return err
	}
	var nc *nats.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		if nc, err = broker.Connect(broker.ConnectConfig{URL: url, Key: kp, Name: "memory bench"}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	fmt.Printf("%-10s %-10s %s\n", "RUNS", "RSS MiB", "ELAPSED")
	fmt.Printf("%-10d %-10.1f %s\n", 0, rssMiB(serve.Process.Pid), "0s")
	start := time.Now()
	msg := []byte(`{"messageId":"m","role":"ROLE_USER","parts":[{"text":"start"}]}`)
	step := max(runs/10, 1)
	for i := 1; i <= runs; i++ {
		run := schemas.NewID()
		env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindInvoke, RunID: run, From: "tomas", To: "orchestrator",
			Message: msg, SentAt: time.Now().UTC()}
		env.HopID = env.DerivedHopID()
		wire, err := env.Sign(kp.Sign)
		if err != nil {
			return err
		}
		for {
			_, err := js.PublishAsync("tg.submit.tomas."+run, wire)
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				<-js.PublishAsyncComplete() // a loaded machine: wait, then offer it again
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		if i%step == 0 {
			<-js.PublishAsyncComplete()
			if err := drained(url, keys, i); err != nil {
				return err
			}
			fmt.Printf("%-10d %-10.1f %s\n", i, rssMiB(serve.Process.Pid), time.Since(start).Round(time.Second))
			if heapDir != "" {
				if err := heapProfile(adminAddr, pprofToken, filepath.Join(heapDir, fmt.Sprintf("heap-%d.pb.gz", i))); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// drained waits until the orchestrator's consumer holds n deliveries, that
// is until the enforcer has governed every run so far.
func drained(url string, keys map[string]string, n int) error {
	kp, err := broker.LoadSeed(keys["orchestrator"])
	if err != nil {
		return err
	}
	nc, err := broker.Connect(broker.ConnectConfig{URL: url, Key: kp, Name: "memory bench orchestrator"})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.NewWithAPIPrefix(nc, "tg.js")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := js.Consumer(ctx, "DELIVER", "agent_orchestrator")
	if err != nil {
		return err
	}
	for {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending >= uint64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d runs governed: %w", info.NumPending, n, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rssMiB reads a process's resident set size.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return -1
}

// heapProfile saves serve's heap profile (after a GC) from its admin
// listener.
func heapProfile(addr, token, path string) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return os.WriteFile(path, b, 0o644)
}
