package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tollgate/tollgate/enforcer/gateway"
)

func newServeCmd() *cobra.Command {
	var configPath, dataDir string
	instance := -1
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (embedded NATS unless the config names a server)",
		Long: `Run the gateway: provision the streams, give every registered identity its
credential and permissions, and enforce every hop until interrupted.

With no nats.url in the config, an embedded NATS server with JetStream keeps
its data in --data (or nats.data_dir) and listens on nats.listen.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gateway.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if dataDir != "" {
				cfg.NATS.DataDir = dataDir
			}
			if instance >= 0 {
				cfg.Enforcer.Instance = instance
				if err := cfg.Validate(); err != nil {
					return err
				}
			}
			log := logger(cmd)
			gateway.SetMemoryLimit(cfg.Enforcer.MemoryLimit)
			ctx := cmd.Context()
			g, err := gateway.Start(ctx, cfg, gateway.Options{Logger: log, TraceOut: cmd.OutOrStdout()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tollgate serving on %s; Ctrl-C stops, SIGHUP reloads %s\n", g.URL(), configPath)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			tick := time.NewTicker(30 * time.Second)
			defer tick.Stop()
		loop:
			for {
				select {
				case <-ctx.Done():
					break loop
				case <-hup:
					reload(ctx, g, configPath, dataDir, log)
				case <-tick.C:
					s := g.Enforcer().Stats()
					log.Info("enforcer", "allowed", s.Allowed, "denied", s.Denied, "completed", s.Completed, "redelivered", s.Redelivered, "errors", s.Errors)
				}
			}
			stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return g.Close(stopCtx)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file (re-read on SIGHUP)")
	cmd.Flags().StringVar(&dataDir, "data", "", "embedded NATS data folder (overrides nats.data_dir)")
	cmd.Flags().IntVar(&instance, "instance", -1, "which of enforcer.instances this gateway is: the run partitions it prefers (overrides enforcer.instance)")
	return cmd
}

// reload re-reads the config file and applies it to the running gateway;
// a config that fails is refused and the running one stays.
func reload(ctx context.Context, g *gateway.Gateway, path, dataDir string, log *slog.Logger) {
	cfg, err := gateway.LoadConfig(path)
	if err == nil {
		if dataDir != "" {
			cfg.NATS.DataDir = dataDir
		}
		err = g.Reload(ctx, cfg, gateway.Options{})
	}
	if err != nil {
		log.Error("reload refused; the running config stays", "config", path, "err", err)
		return
	}
	log.Info("reloaded", "config", path)
}
