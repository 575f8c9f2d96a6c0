package brokertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// ServerBinary builds nats-server from the module this repository requires
// (the same version the embedded server is), once per test binary, and
// returns its path.
func ServerBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-nats-server-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// External is a nats-server process started by a test.
type External struct {
	// URL is where clients connect; Config the path of its config file.
	URL, Config string
	cmd         *exec.Cmd
	t           testing.TB
}

// FreePort returns a TCP port nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartExternal starts a nats-server process with JetStream in dir, on a
// free port, whose config is conf (appended to the listen and jetstream
// settings); the process is killed when the test ends.
func StartExternal(t testing.TB, dir, conf string) *External {
	t.Helper()
	port := FreePort(t)
	path := filepath.Join(dir, "nats-server.conf")
	full := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream: {store_dir: %q}\n%s", port, filepath.Join(dir, "store"), conf)
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &External{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Config: path, t: t}
	e.start()
	t.Cleanup(e.Kill)
	return e
}

func (e *External) start() {
	e.t.Helper()
	e.cmd = exec.Command(ServerBinary(e.t), "-c", e.Config)
	e.cmd.Stdout, e.cmd.Stderr = os.Stderr, os.Stderr
	if os.Getenv("TOLLGATE_NATS_LOG") == "" {
		e.cmd.Stdout, e.cmd.Stderr = nil, nil
	}
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start nats-server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		c, err := net.Dial("tcp", e.URL[len("nats://"):])
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("nats-server did not listen on %s", e.URL)
}

// Kill stops the process with SIGKILL and waits for it.
func (e *External) Kill() {
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Kill()
		_ = e.cmd.Wait()
		e.cmd = nil
	}
}

// Restart starts the process again on the same config and store.
func (e *External) Restart() {
	e.t.Helper()
	e.Kill()
	e.start()
}
