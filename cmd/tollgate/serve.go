package main

import (
	"context"
	"fmt"
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
			log, err := logger(cmd)
			if err != nil {
				return err
			}
			if instance >= 0 {
				cfg.Enforcer.Instance = instance
				if err := cfg.Validate(); err != nil {
					return err
				}
			}
			gateway.SetMemoryLimit(cfg.Enforcer.MemoryLimitBytes())
			ctx := cmd.Context()
			load := func() (*gateway.Config, error) {
				cfg, err := gateway.LoadConfig(configPath)
				if err == nil && dataDir != "" {
					cfg.NATS.DataDir = dataDir
				}
				return cfg, err
			}
			g, err := gateway.Start(ctx, cfg, gateway.Options{Logger: log, TraceOut: cmd.OutOrStdout(), LoadConfig: load})
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
					_, _ = g.ReloadFromSource(ctx, "SIGHUP")
				case <-tick.C:
					s := g.Enforcer().Stats()
					log.Info("enforcer", "allowed", s.Allowed, "denied", s.Denied, "completed", s.Completed, "redelivered", s.Redelivered, "errors", s.Errors)
				}
			}
			log.Info("shutting down", "reason", context.Cause(ctx))
			stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			err = g.Close(stopCtx)
			log.Info("stopped", "err", err)
			return err
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file (re-read on SIGHUP)")
	cmd.Flags().StringVar(&dataDir, "data", "", "embedded NATS data folder (overrides nats.data_dir)")
	cmd.Flags().IntVar(&instance, "instance", -1, "which of enforcer.instances this gateway is: the run partitions it prefers (overrides enforcer.instance)")
	return cmd
}
