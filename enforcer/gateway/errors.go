package gateway

import "errors"

// Sentinel errors. Callers test them with errors.Is; the errors returned
// wrap them with the folder, server or config concerned.
var (
	// ErrDataDirInUse means a data folder's lock is held: a gateway (or a
	// reader such as replay) has its JetStream store open. Read the ledger
	// through that gateway's server instead.
	ErrDataDirInUse = errors.New("data folder in use")
	// ErrNoStore means a folder is not a gateway's data folder: it holds
	// no JetStream store.
	ErrNoStore = errors.New("holds no ledger")
	// ErrNoLedgerStream means the server (or store) has no ledger stream
	// under the expected name: not a Tollgate gateway's, or another stream
	// prefix.
	ErrNoLedgerStream = errors.New("no ledger stream")
	// ErrNoSource means a Source names no place to read the ledger from.
	ErrNoSource = errors.New("no ledger source")
	// ErrTwoSources means a Source names both a data folder and a server.
	ErrTwoSources = errors.New("two ledger sources")
	// ErrReloadRefused means Reload refused a config (it does not
	// validate, or changes what needs a restart); the running config
	// stays.
	ErrReloadRefused = errors.New("reload refused")
	// ErrNoClickHouse means no ClickHouse DSN was given, nor found in the
	// config (ProjectionsConfig).
	ErrNoClickHouse = errors.New("no ClickHouse")
	// ErrEnforcerRunning is returned by StartEnforcer while an enforcer
	// runs.
	ErrEnforcerRunning = errors.New("gateway: an enforcer is running")
	// ErrNoListener means an embedded gateway serves in-process
	// connections only (nats.listen none): no other process reaches it.
	ErrNoListener = errors.New("the gateway's embedded NATS listens on no address (nats.listen: none)")
)

// explained is an error that reads as its message and wraps a sentinel,
// for messages that say more than the sentinel does.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }
