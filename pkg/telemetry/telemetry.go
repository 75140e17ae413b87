// Package telemetry sets up OpenTelemetry for a semantic binary: a meter
// provider exported as Prometheus text on a separate HTTP port, and tracer and
// meter exporters over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT is set. Every
// signal carries the resource attributes service.name, service.version and
// service.instance.id (the node id).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Config says what to export and where.
type Config struct {
	ServiceName string
	Version     string
	NodeID      string
	// MetricsListen is the address of the Prometheus /metrics endpoint;
	// empty disables it.
	MetricsListen string
	Logger        *slog.Logger
}

// Telemetry owns the providers and the metrics endpoint. Shutdown flushes and
// stops all of them.
type Telemetry struct {
	MeterProvider  *sdkmetric.MeterProvider
	TracerProvider *sdktrace.TracerProvider
	// MetricsAddr is the address the /metrics endpoint listens on (resolved,
	// so ":0" becomes a real port); empty when disabled.
	MetricsAddr string
	// Prometheus is the registry /metrics serves, for collectors that are
	// not OpenTelemetry instruments (metric names with a colon, such as
	// the vLLM-compatible set); nil when /metrics is disabled.
	Prometheus prometheus.Registerer

	httpSrv   *http.Server
	shutdowns []func(context.Context) error
}

// OTLPEndpointEnv is the standard variable that turns OTLP export on.
const OTLPEndpointEnv = "OTEL_EXPORTER_OTLP_ENDPOINT"

// Setup builds the providers, installs them as the otel globals (so libraries
// that use the globals report too), and starts the metrics endpoint.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(cfg.ServiceName),
		semconv.ServiceVersion(cfg.Version),
		semconv.ServiceInstanceID(cfg.NodeID),
	))
	if err != nil {
		// A schema URL conflict between the default resource and ours is not
		// worth failing start-up for: fall back to our attributes alone.
		res = resource.NewWithAttributes(semconv.SchemaURL,
			semconv.ServiceName(cfg.ServiceName),
			semconv.ServiceVersion(cfg.Version),
			semconv.ServiceInstanceID(cfg.NodeID))
	}
	t := &Telemetry{}
	meterOpts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	traceOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}

	// A registry of our own rather than the process-global one, so that two
	// servers in one test process do not collide.
	var registry *prometheus.Registry
	if cfg.MetricsListen != "" {
		registry = prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(otelprom.WithRegisterer(registry))
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		meterOpts = append(meterOpts, sdkmetric.WithReader(exp))
		t.Prometheus = registry
	}
	if os.Getenv(OTLPEndpointEnv) != "" {
		// The exporters read the endpoint, headers and TLS settings from the
		// standard OTEL_EXPORTER_OTLP_* variables.
		mexp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp metric exporter: %w", err)
		}
		meterOpts = append(meterOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(15*time.Second))))
		texp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		traceOpts = append(traceOpts, sdktrace.WithBatcher(texp))
		log.Info("otlp export enabled", "endpoint", os.Getenv(OTLPEndpointEnv))
	}
	t.MeterProvider = sdkmetric.NewMeterProvider(meterOpts...)
	t.TracerProvider = sdktrace.NewTracerProvider(traceOpts...)
	t.shutdowns = append(t.shutdowns, t.TracerProvider.Shutdown, t.MeterProvider.Shutdown)
	otel.SetMeterProvider(t.MeterProvider)
	otel.SetTracerProvider(t.TracerProvider)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	if registry != nil {
		ln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			_ = t.Shutdown(ctx)
			return nil, fmt.Errorf("metrics listen %s: %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		t.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		t.MetricsAddr = ln.Addr().String()
		go func() {
			if err := t.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		log.Info("metrics endpoint listening", "addr", t.MetricsAddr, "path", "/metrics")
	}
	return t, nil
}

// Meter is a convenience for t.MeterProvider.Meter(name).
func (t *Telemetry) Meter(name string) metric.Meter { return t.MeterProvider.Meter(name) }

// Tracer is a convenience for t.TracerProvider.Tracer(name).
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// Shutdown stops the metrics endpoint and flushes the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.httpSrv != nil {
		errs = append(errs, t.httpSrv.Shutdown(ctx))
	}
	for _, f := range t.shutdowns {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
