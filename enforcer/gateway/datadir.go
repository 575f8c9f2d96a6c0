package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"
	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/broker"
)

// storeDir is the JetStream store inside a gateway's data folder.
const storeDir = "jetstream"

// dataLockName is the lock file of a gateway data folder. Whoever opens
// the folder's JetStream store holds an exclusive lock on it for as long
// as the store is open: two servers on one store would corrupt it.
const dataLockName = "tollgate.lock"

// LockDataDir takes a data folder's lock without waiting; it fails with
// ErrDataDirInUse when another process (a gateway, a replay) holds it.
func LockDataDir(dir string) (unlock func(), err error) {
	l := flock.New(filepath.Join(dir, dataLockName), flock.SetPermissions(0o600))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.Path(), err)
	}
	if !ok {
		return nil, &explained{err: ErrDataDirInUse, msg: fmt.Sprintf("%s is in use: a gateway (or another replay) has its store open and holds %s; "+
			"stop it, or read the ledger through the running gateway with an operator's key (--config FILE --creds OPERATOR.nk, or --nats URL --creds OPERATOR.nk)", dir, dataLockName)}
	}
	return func() { _ = l.Unlock() }, nil
}

// OpenDataDir starts an embedded server on the store of a data folder that
// a gateway left behind, listening nowhere, after taking the folder's
// lock, and connects to it in-process as the gateway account's user (the
// streams live in that account). It provisions nothing. Close releases
// the connection, the server and the lock. A folder without a store is
// ErrNoStore; one in use, ErrDataDirInUse.
func OpenDataDir(ctx context.Context, dir string, subjects broker.Subjects) (nc *nats.Conn, close func(), err error) {
	store := filepath.Join(dir, storeDir)
	if fi, err := os.Stat(store); err != nil || !fi.IsDir() {
		return nil, nil, fmt.Errorf("%s %w: %s is missing (give the folder that `tollgate demo --data` or `serve --data` used)", dir, ErrNoStore, store)
	}
	unlock, err := LockDataDir(dir)
	if err != nil {
		return nil, nil, err
	}
	key, err := broker.NewKey()
	if err != nil {
		unlock()
		return nil, nil, err
	}
	pub, _ := key.PublicKey()
	accounts := subjects.AccountsConfig(broker.Layout{GatewayKeys: []string{pub}})
	emb, err := broker.StartEmbedded(ctx, broker.EmbeddedConfig{DataDir: store, NoListen: true, Accounts: accounts})
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("open the store in %s: %w", dir, err)
	}
	nc, err = broker.Connect(broker.ConnectConfig{InProcess: emb, Key: key, Name: "tollgate reader",
		Options: []nats.Option{nats.MaxReconnects(0)}})
	if err != nil {
		emb.Shutdown()
		unlock()
		return nil, nil, err
	}
	return nc, func() { nc.Close(); emb.Shutdown(); unlock() }, nil
}
