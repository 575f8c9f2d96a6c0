package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

// sourceFlags say where the ledger is read from (gateway.Source): a data
// folder that a gateway left behind (demo --data, serve --data), a NATS
// server, or a gateway config that names one of them.
type sourceFlags struct {
	data, url, creds, config    string
	subjectPrefix, streamPrefix string
	timeout                     time.Duration

	flags *pflag.FlagSet
	cfg   *gateway.Config
}

func (s *sourceFlags) addFlags(fs *pflag.FlagSet) {
	s.flags = fs
	fs.StringVar(&s.data, "data", "", "a gateway's data folder (demo --data, serve --data): its ledger is read in-process; refused while a gateway holds it")
	fs.StringVar(&s.url, "nats", "", "NATS URL of a running gateway's server")
	fs.StringVar(&s.creds, "creds", "", "an operator's nkey seed file, to read a running gateway (with --nats, or with --config to find it)")
	fs.StringVarP(&s.config, "config", "c", "", "gateway config: its nats settings say where the ledger is, its identities' public keys check signatures")
	fs.StringVar(&s.subjectPrefix, "subject-prefix", broker.DefaultPrefix, "the gateway's subject prefix")
	fs.StringVar(&s.streamPrefix, "stream-prefix", "", "the gateway's stream-name prefix")
	fs.DurationVar(&s.timeout, "timeout", 2*time.Minute, "give up after this long")
}

// given reports whether any flag names a place.
func (s *sourceFlags) given() bool { return s.data != "" || s.url != "" || s.config != "" }

// loadConfig reads --config once.
func (s *sourceFlags) loadConfig() (*gateway.Config, error) {
	if s.config == "" || s.cfg != nil {
		return s.cfg, nil
	}
	cfg, err := gateway.LoadConfig(s.config)
	if err != nil {
		return nil, err
	}
	s.cfg = cfg
	return cfg, nil
}

// source is the gateway.Source the flags name; the config's names count
// unless the flags set them.
func (s *sourceFlags) source() (gateway.Source, error) {
	cfg, err := s.loadConfig()
	if err != nil {
		return gateway.Source{}, err
	}
	src := gateway.Source{DataDir: s.data, URL: s.url, Creds: s.creds, Config: cfg, SubjectPrefix: s.subjectPrefix, StreamPrefix: s.streamPrefix}
	if cfg != nil && !s.flags.Changed("subject-prefix") {
		src.SubjectPrefix = cfg.NATS.SubjectPrefix
	}
	if cfg != nil && !s.flags.Changed("stream-prefix") {
		src.StreamPrefix = cfg.NATS.StreamPrefix
	}
	return src, nil
}

// explain turns the source errors into advice on the flags.
func explain(err error) error {
	switch {
	case errors.Is(err, gateway.ErrTwoSources):
		return errors.New("give either --data or --nats, not both")
	case errors.Is(err, gateway.ErrNoSource):
		return errors.New("say where the ledger is: --data DIR (a demo's or gateway's data folder), --nats URL --creds OPERATOR.nk, or --config FILE (with --creds OPERATOR.nk while it runs)")
	}
	return err
}

// open connects to the ledger the flags name.
func (s *sourceFlags) open(ctx context.Context) (*gateway.LedgerConn, error) {
	src, err := s.source()
	if err != nil {
		return nil, err
	}
	l, err := gateway.OpenLedger(ctx, src)
	return l, explain(err)
}

// dial connects to the bus the flags name.
func (s *sourceFlags) dial(ctx context.Context) (*gateway.BusConn, error) {
	src, err := s.source()
	if err != nil {
		return nil, err
	}
	c, err := gateway.Dial(ctx, src)
	return c, explain(err)
}
