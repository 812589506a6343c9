// Package tracing sets up jobhook's OpenTelemetry traces: an SDK tracer
// provider exporting over OTLP/HTTP when the standard OTEL_* variables ask
// for it, and nothing (a nil provider, no spans, no propagation) when they
// do not. It also holds the HTTP pieces the app wires in: the server
// handler and the client transport (otelhttp), and a slog handler that
// adds trace_id and span_id to the lines logged inside a span.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceName is the service.name of jobhook's spans when
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) does not
// set one.
const DefaultServiceName = "jobhook"

// instrumentation names the tracer of the HTTP spans.
const instrumentation = "github.com/jobhook/jobhook"

// Tracing is the tracing of one process: a tracer provider exporting over
// OTLP/HTTP, or nothing. A nil *Tracing is off.
type Tracing struct {
	provider *sdktrace.TracerProvider
	// Why says what turned tracing on, for the start-up log.
	Why string
}

// Settings is what the OTEL_* variables ask for.
type Settings struct {
	// On is true when traces are to be exported.
	On bool
	// Why names the variable that decided.
	Why string
}

// Read reads the standard OTEL_* variables through getenv (os.Getenv when
// nil). Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED=true
// or OTEL_TRACES_EXPORTER=none. An exporter or protocol jobhook does not
// have (grpc, http/json, console, …) is an error naming the variable: the
// exporter is OTLP over HTTP with protobuf.
func Read(getenv func(string) string) (Settings, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	val := func(k string) string { return strings.TrimSpace(getenv(k)) }
	endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	if val(endpoint) == "" {
		endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	switch {
	case val(endpoint) == "":
		return Settings{Why: "OTEL_EXPORTER_OTLP_ENDPOINT not set"}, nil
	case strings.EqualFold(val("OTEL_SDK_DISABLED"), "true"):
		return Settings{Why: "OTEL_SDK_DISABLED=true"}, nil
	}
	var errs []error
	for _, k := range []string{"OTEL_TRACES_EXPORTER"} {
		switch v := strings.ToLower(val(k)); v {
		case "none":
			return Settings{Why: k + "=none"}, nil
		case "", "otlp":
		default:
			errs = append(errs, fmt.Errorf("%s=%s is not supported: jobhook exports traces with OTLP only (set otlp, or none to turn traces off)", k, v))
		}
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		switch v := strings.ToLower(val(k)); v {
		case "", "http/protobuf":
		default:
			errs = append(errs, fmt.Errorf("%s=%s is not supported: jobhook exports traces over OTLP/HTTP with protobuf (set http/protobuf, and point the endpoint at the collector's HTTP port, usually 4318)", k, v))
		}
	}
	if len(errs) > 0 {
		return Settings{}, fmt.Errorf("tracing: %w", errors.Join(errs...))
	}
	return Settings{On: true, Why: endpoint + " set"}, nil
}

// New reads the OTEL_* variables (see Read) and, when they ask for
// traces, builds a tracer provider that batches spans to the OTLP/HTTP
// exporter. The exporter reads the OTEL_EXPORTER_OTLP_* variables itself
// (endpoint, headers, timeout, TLS files); the provider reads
// OTEL_TRACES_SAMPLER (default parentbased_always_on) and the span limits;
// the resource reads OTEL_SERVICE_NAME (default jobhook) and
// OTEL_RESOURCE_ATTRIBUTES, and adds the process's and host's attributes.
// It returns nil, nil when tracing is off.
func New(ctx context.Context, getenv func(string) string) (*Tracing, error) {
	s, err := Read(getenv)
	if err != nil || !s.On {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithProcessPID(), resource.WithProcessExecutableName(), resource.WithProcessRuntimeVersion(),
		resource.WithHost(),
	)
	if err != nil {
		// A detector that failed leaves out its attributes only.
		if res == nil {
			return nil, fmt.Errorf("tracing: resource: %w", err)
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{provider: tp, Why: s.Why}, nil
}

// TracerProvider is the provider to hand to the parts that trace, or nil
// when t is off.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.provider
}

// Shutdown exports the spans still buffered and stops the provider; ctx
// bounds the export.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush the last spans: %w", err)
	}
	return nil
}

// Propagator is how jobhook carries a trace across processes: the W3C
// traceparent and tracestate headers, and W3C baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Handler wraps a server handler so that each request is a server span,
// the child of the request's traceparent when it has one. The span is
// named by the method and, when the handler sets the request's Pattern
// (handlers does, from the Echo route), the route: "POST /api/jobs". With
// a nil tp it returns h.
func Handler(h http.Handler, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return h
	}
	// otelhttp names the span by the Pattern set while serving; the route
	// attribute is set here.
	withRoute := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.Pattern != "" {
			trace.SpanFromContext(r.Context()).SetAttributes(semconv.HTTPRoute(r.Pattern))
		}
	})
	return otelhttp.NewHandler(withRoute, "http", otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(Propagator()))
}

// Transport wraps a client transport (nil: http.DefaultTransport) so that
// each request is a client span sending its traceparent. With a nil tp it
// returns rt unchanged. The wrapped transport's Base returns rt.
func Transport(rt http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	if tp == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &transport{
		traced: otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(Propagator())),
		base:   rt,
	}
}

// transport is a traced transport that still says what it wraps.
type transport struct {
	traced http.RoundTripper
	base   http.RoundTripper
}

// RoundTrip sends r in a client span.
func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) { return t.traced.RoundTrip(r) }

// Base returns the transport underneath the tracing.
func (t *transport) Base() http.RoundTripper { return t.base }

// BaseTransport returns the transport under a traced one made by
// Transport, or rt itself.
func BaseTransport(rt http.RoundTripper) http.RoundTripper {
	if t, ok := rt.(*transport); ok {
		return t.base
	}
	return rt
}

// Client returns hc with its transport wrapped by Transport: a copy, so
// hc itself is unchanged. With a nil tp (or a nil hc) it returns hc.
func Client(hc *http.Client, tp trace.TracerProvider) *http.Client {
	if tp == nil || hc == nil {
		return hc
	}
	traced := *hc
	traced.Transport = Transport(hc.Transport, tp)
	return &traced
}

// ServiceName is the service.name the spans carry: OTEL_SERVICE_NAME, or
// DefaultServiceName.
func ServiceName() string {
	if n := strings.TrimSpace(os.Getenv("OTEL_SERVICE_NAME")); n != "" {
		return n
	}
	return DefaultServiceName
}
