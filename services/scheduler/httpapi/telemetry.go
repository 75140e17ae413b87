package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// telemetry is the API's metrics and tracer.
//
// Metrics (Prometheus names on /metrics in brackets):
//   - semantic.http.requests [semantic_http_requests_total]: requests by
//     http.route and http.response.status_code: the status sent, or for a
//     stream that failed after it began the error's (499: the client went
//     away first);
//   - semantic.http.request.duration [semantic_http_request_duration_seconds]:
//     latency to the last byte, by route and status;
//   - semantic.http.time_to_first_token
//     [semantic_http_time_to_first_token_seconds]: arrival to the first
//     generated token, by route and whether it streamed;
//   - semantic.http.active_requests: requests in flight, by route.
type telemetry struct {
	tracer   trace.Tracer
	requests metric.Int64Counter
	duration metric.Float64Histogram
	ttft     metric.Float64Histogram
	active   metric.Int64UpDownCounter
}

func newTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) (*telemetry, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	m := mp.Meter("semantic.scheduler.http")
	t := &telemetry{tracer: tp.Tracer("semantic.scheduler.http")}
	var err error
	if t.requests, err = m.Int64Counter("semantic.http.requests", metric.WithUnit("{request}"),
		metric.WithDescription("HTTP API requests by route and status")); err != nil {
		return nil, err
	}
	buckets := metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
	if t.duration, err = m.Float64Histogram("semantic.http.request.duration", metric.WithUnit("s"),
		metric.WithDescription("HTTP API request latency, to the end of the response"), buckets); err != nil {
		return nil, err
	}
	if t.ttft, err = m.Float64Histogram("semantic.http.time_to_first_token", metric.WithUnit("s"),
		metric.WithDescription("HTTP API time from a request's arrival to its first generated token"), buckets); err != nil {
		return nil, err
	}
	if t.active, err = m.Int64UpDownCounter("semantic.http.active_requests", metric.WithUnit("{request}"),
		metric.WithDescription("HTTP API requests in flight")); err != nil {
		return nil, err
	}
	return t, nil
}

// startSpan starts the request's server span, a child of the caller's trace
// context (traceparent) when there is one; the service's spans (lookup,
// lease, load, commit) hang under it.
func (t *telemetry) startSpan(c *call) (*http.Request, trace.Span) {
	r := c.r
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, c.route, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("http.route", c.route),
		attribute.String("url.path", r.URL.Path),
		attribute.String("user_agent.original", r.UserAgent()),
		attribute.String("semantic.request_id", c.id),
	))
	t.active.Add(ctx, 1, metric.WithAttributes(attribute.String("http.route", c.route)))
	return r.WithContext(ctx), span
}

// end records the request's metrics, ends its span and logs it.
func (t *telemetry) end(c *call, span trace.Span, log *slog.Logger) {
	// A stream that began (200 on the wire) and then failed, or whose
	// client left, is counted by how it ended.
	status := c.rec.status
	if e := c.rec.err; e != nil {
		status = e.status
	}
	if status == 0 {
		status = http.StatusOK
	}
	bg := context.Background()
	route := attribute.String("http.route", c.route)
	attrs := metric.WithAttributes(route, attribute.Int("http.response.status_code", status))
	d := time.Since(c.start)
	t.requests.Add(bg, 1, attrs)
	t.duration.Record(bg, d.Seconds(), attrs)
	t.active.Add(bg, -1, metric.WithAttributes(route))

	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if c.rec.agent != "" {
		span.SetAttributes(attribute.String("semantic.agent_id", c.rec.agent))
	}
	level := slog.LevelDebug
	switch {
	case status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout:
		level = slog.LevelError
		span.SetStatus(otelcodes.Error, http.StatusText(status))
	case status == http.StatusTooManyRequests || status >= 500:
		level = slog.LevelWarn
		span.SetStatus(otelcodes.Error, http.StatusText(status))
	}
	args := []any{"method", c.r.Method, "route", c.route, "status", status, "request_id", c.id,
		"duration_ms", float64(d.Microseconds()) / 1000}
	if c.rec.agent != "" {
		args = append(args, "agent", c.rec.agent)
	}
	if e := c.rec.err; e != nil {
		args = append(args, "err", e.text())
	}
	log.Log(bg, level, "http", args...)
	span.End()
}

// firstToken records the time to first token of a generation. (The service
// adds the "first token" event to the request's span.)
func (t *telemetry) firstToken(c *call, stream bool) {
	t.ttft.Record(context.Background(), time.Since(c.start).Seconds(), metric.WithAttributes(
		attribute.String("http.route", c.route), attribute.Bool("stream", stream)))
}
