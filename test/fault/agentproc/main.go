// Command agentproc is an agent of the fault suite, run as a process of its
// own: it serves one identity with the broker/agent client, writes a line
// for every run of its handler, and delegates to the agents it is told to.
//
//	agentproc -url nats://127.0.0.1:4222 -id orchestrator -seed orchestrator.nk \
//	  -log runs.log -delegate research,writer -tokens 50
//
// Each line of the log is "<agent> <run> <hop>", written with one write
// call before the handler does anything else, so the suite counts how
// often each hop's handler ran at its agent.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "agentproc:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "", "NATS URL")
	id := flag.String("id", "", "the agent's id")
	seed := flag.String("seed", "", "the agent's nkey seed file")
	logPath := flag.String("log", "", "file to append one line per handler run to")
	delegate := flag.String("delegate", "", "comma-separated agents each task delegates to, in order")
	tokens := flag.Int64("tokens", 10, "tokens each task reports")
	delay := flag.Duration("delay", 0, "how long each task works")
	stuck := flag.String("stuck", "", "tasks whose message is this text never return (until the process is stopped)")
	flag.Parse()
	if *url == "" || *id == "" || *seed == "" || *logPath == "" {
		return fmt.Errorf("-url, -id, -seed and -log are required")
	}
	key, err := broker.LoadSeed(*seed)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	var mu sync.Mutex
	note := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = f.WriteString(line + "\n")
	}
	var targets []string
	if *delegate != "" {
		targets = strings.Split(*delegate, ",")
	}
	quit, stopQuit := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stopQuit()
	handler := func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		note(fmt.Sprintf("%s %s %s", *id, t.Context.RunID, t.Context.HopID))
		text := agent.MessageText(t.Message)
		if *stuck != "" && text == *stuck {
			// Stuck for good: not even its deadline ends it, so only the
			// gateway's timer can close the hop.
			<-quit.Done()
			return nil, quit.Err()
		}
		if *delay > 0 {
			select {
			case <-time.After(*delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		for _, to := range targets {
			r, err := t.Delegate(ctx, to, agent.UserText(text))
			if err != nil {
				return nil, fmt.Errorf("delegate to %s: %w", to, err)
			}
			if r.Status != schemas.StateCompleted {
				return nil, fmt.Errorf("%s answered %s: %s", to, r.Status, r.Error)
			}
		}
		return &agent.Result{Output: agent.AgentText(*id + " done"), Usage: &schemas.Usage{InputTokens: *tokens}}, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var c *agent.Client
	// The gateway may be restarting: keep trying to connect.
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err = agent.Connect(cctx, agent.Config{ID: *id, Key: key, URL: *url, Handler: handler, Logger: log})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Println("agent ready:", *id)
	<-ctx.Done()
	c.Close()
	return nil
}
