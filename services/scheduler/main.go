// Command scheduler serves semantic.scheduler.v1.SchedulerService: LLM
// generation for long-lived agents whose KV cache lives in block-pool nodes
// (or, with no --pool, in a pool embedded in this process).
package main

import (
	"context"

	"github.com/semantic-kv/semantic/pkg/app"
	"github.com/semantic-kv/semantic/services/scheduler/runner"
)

func main() {
	var cfg runner.Config
	app.Main(app.Binary{
		Name:                 "scheduler",
		DefaultListen:        ":50051",
		DefaultMetricsListen: ":9090",
		Flags:                cfg.RegisterFlags,
		Start: func(ctx context.Context, rt *app.Runtime) (func(context.Context) error, error) {
			s, err := runner.Start(ctx, cfg, runner.Deps{
				DataDir: rt.Common.DataDir, Logger: rt.Logger, Version: app.Version,
				MeterProvider: rt.MeterProvider, TracerProvider: rt.TracerProvider, Prometheus: rt.Prometheus,
			})
			if err != nil {
				return nil, err
			}
			s.Register(rt.GRPC)
			// Every gRPC call is authenticated (API keys) before a handler runs.
			rt.Authenticate(s.Auth.GRPC)
			// The HTTP API drains alongside gRPC when shutdown begins.
			rt.OnShutdown(s.Drain)
			return s.Close, nil
		},
	})
}
