package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"

	"github.com/tollgate/tollgate/broker"
)

// storeDir is the JetStream store inside a gateway's data folder.
const storeDir = "jetstream"

// dataLockName is the lock file of a gateway data folder. Whoever opens
// the folder's JetStream store holds an exclusive lock on it for as long
// as the store is open: two servers on one store would corrupt it.
const dataLockName = "tollgate.lock"

// LockDataDir takes a data folder's lock without waiting; it fails when
// another process (a gateway, a replay) holds it.
func LockDataDir(dir string) (unlock func(), err error) {
	l := flock.New(filepath.Join(dir, dataLockName), flock.SetPermissions(0o600))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.Path(), err)
	}
	if !ok {
		return nil, fmt.Errorf("%s is in use: a gateway (or another replay) has its store open and holds %s; "+
			"stop it, or read the ledger through it with --nats URL", dir, dataLockName)
	}
	return func() { _ = l.Unlock() }, nil
}

// OpenDataDir starts an embedded server on the store of a data folder that
// a gateway left behind, listening nowhere, after taking the folder's
// lock. It provisions nothing. Close releases both.
func OpenDataDir(ctx context.Context, dir string) (emb *broker.Embedded, close func(), err error) {
	store := filepath.Join(dir, storeDir)
	if fi, err := os.Stat(store); err != nil || !fi.IsDir() {
		return nil, nil, fmt.Errorf("%s holds no ledger: %s is missing (give the folder that `tollgate demo --data` or `serve --data` used)", dir, store)
	}
	unlock, err := LockDataDir(dir)
	if err != nil {
		return nil, nil, err
	}
	emb, err = broker.StartEmbedded(ctx, broker.EmbeddedConfig{DataDir: store, NoListen: true})
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("open the store in %s: %w", dir, err)
	}
	return emb, func() { emb.Shutdown(); unlock() }, nil
}
