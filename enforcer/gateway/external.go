package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/broker"
)

// System account subjects of nats-server (see its events.go).
const (
	sysPing         = "$SYS.REQ.SERVER.PING"
	sysReloadFormat = "$SYS.REQ.SERVER.%s.RELOAD"
)

// externalLayout writes the accounts block of an external server's config
// and, with system credentials, has every server reload it. prev is the
// layout the servers run with now (nil at start): accounts new in l are
// added in two reloads (see broker.Subjects.StagedAccountsConfig).
func (g *Gateway) externalLayout(ctx context.Context, cfg *Config, l broker.Layout, prev *broker.Layout) error {
	if cfg.NATS.AccountsFile == "" {
		return nil
	}
	staged := map[string]bool{}
	if prev != nil {
		had := g.subjects.AccountNames(*prev)
		for name := range g.subjects.AccountNames(l) {
			if !had[name] {
				staged[name] = true
			}
		}
	}
	if len(staged) > 0 {
		if err := g.writeAccounts(ctx, cfg, g.subjects.StagedAccountsConfig(l, staged)); err != nil {
			return err
		}
	}
	return g.writeAccounts(ctx, cfg, g.subjects.AccountsConfig(l))
}

// writeAccounts writes the accounts file (atomically) and reloads the
// servers when the gateway has system credentials and the file changed.
func (g *Gateway) writeAccounts(ctx context.Context, cfg *Config, accounts string) error {
	path := cfg.Path(cfg.NATS.AccountsFile)
	if old, err := os.ReadFile(path); err == nil && string(old) == accounts {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".accounts-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.WriteString(accounts)
	if err := errors.Join(werr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if cfg.NATS.SystemCredentials == "" {
		g.log.Warn("accounts file written; reload the NATS servers for it to take effect", "file", path)
		return nil
	}
	return reloadServers(ctx, cfg)
}

// reloadServers asks every server of the cluster to reload its config,
// through the system account.
func reloadServers(ctx context.Context, cfg *Config) error {
	kp, err := broker.LoadSeed(cfg.Path(cfg.NATS.SystemCredentials))
	if err != nil {
		return fmt.Errorf("system credentials: %w", err)
	}
	nc, err := broker.Connect(broker.ConnectConfig{URL: cfg.NATS.URL, Key: kp, Name: "tollgate reload",
		Options: []nats.Option{nats.MaxReconnects(1)}})
	if err != nil {
		return fmt.Errorf("reload servers: %w", err)
	}
	defer nc.Close()
	ids, err := serverIDs(ctx, nc)
	if err != nil {
		return err
	}
	for _, id := range ids {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := nc.RequestWithContext(rctx, fmt.Sprintf(sysReloadFormat, id), nil)
		cancel()
		if err != nil {
			return fmt.Errorf("reload server %s: %w", id, err)
		}
		var r struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if json.Unmarshal(m.Data, &r) == nil && r.Error != nil {
			return fmt.Errorf("reload server %s: %s", id, r.Error.Description)
		}
	}
	return nil
}

// serverIDs finds every server answering a system ping within a moment.
func serverIDs(ctx context.Context, nc *nats.Conn) ([]string, error) {
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(sysPing, inbox, nil); err != nil {
		return nil, err
	}
	var ids []string
	wait := 2 * time.Second
	for {
		m, err := sub.NextMsg(wait)
		if err != nil {
			break
		}
		wait = 250 * time.Millisecond
		var r struct {
			Server struct {
				ID string `json:"id"`
			} `json:"server"`
		}
		if json.Unmarshal(m.Data, &r) == nil && r.Server.ID != "" {
			ids = append(ids, r.Server.ID)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("reload servers: no server answered %s (are the system credentials a system account user?)", sysPing)
	}
	return ids, nil
}

// AccountsConfig is the accounts block an external server's config must
// include for cfg (what the gateway writes to nats.accounts_file), from the
// gateway's credentials, its identities and operators, and the system
// account user of nats.system_credentials. `tollgate nats accounts` prints
// it to bootstrap a server before the gateway first connects.
func AccountsConfig(cfg *Config) (string, error) {
	cfg.SetDefaults()
	if cfg.NATS.Credentials == "" {
		return "", errors.New("nats.credentials (the gateway's nkey seed) is required to write the accounts")
	}
	dir, err := cfg.Directory()
	if err != nil {
		return "", err
	}
	subjects, err := broker.NewSubjects(cfg.NATS.SubjectPrefix, cfg.NATS.StreamPrefix)
	if err != nil {
		return "", err
	}
	kp, err := broker.LoadSeed(cfg.Path(cfg.NATS.Credentials))
	if err != nil {
		return "", err
	}
	g := &Gateway{key: kp, subjects: subjects}
	l, err := g.layout(cfg, dir)
	if err != nil {
		return "", err
	}
	return subjects.AccountsConfig(l), nil
}
