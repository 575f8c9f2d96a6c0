package benchkit

import (
	"context"
	"fmt"
	"runtime/pprof"
	"time"

	"github.com/tollgate/tollgate/broker"
)

// Cost is what a measurement used besides wall time: the process's CPU
// (user + system, every goroutine: the enforcer or relay and the embedded
// NATS server together) between the start of consuming and the drain, and
// the bytes each stream held afterwards.
type Cost struct {
	CPU time.Duration
	// Stored is the bytes and messages each stream held after the drain
	// (file store, as the server reports them in the stream's state).
	Stored map[string]StreamUse
}

// StreamUse is one stream's state after a measurement.
type StreamUse struct {
	Bytes, Msgs uint64
}

// stored reads the state of the gateway's streams.
func (e *env) stored(ctx context.Context) (map[string]StreamUse, error) {
	out := map[string]StreamUse{}
	for _, name := range []string{broker.StreamSubmit, broker.StreamLedger, broker.StreamDeliver, broker.StreamTimers} {
		s, err := e.js.Stream(ctx, e.subjects.Stream(name))
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream %s info: %w", name, err)
		}
		out[name] = StreamUse{Bytes: info.State.Bytes, Msgs: info.State.Msgs}
	}
	return out, nil
}

// startProfile starts the workload's CPU profile, if it asked for one,
// and returns what stops it.
func (w Workload) startProfile() (func(), error) {
	if w.Profile == nil {
		return func() {}, nil
	}
	if err := pprof.StartCPUProfile(w.Profile); err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return pprof.StopCPUProfile, nil
}
