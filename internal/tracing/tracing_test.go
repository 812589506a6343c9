package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhook/jobhook/internal/tracing"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// TestRead: on only when an OTLP endpoint is set and nothing turns it off;
// a protocol or exporter jobhook does not have is refused, naming it.
func TestRead(t *testing.T) {
	ep := "http://127.0.0.1:4318"
	for _, tc := range []struct {
		name string
		env  map[string]string
		on   bool
		err  string
	}{
		{name: "nothing set", env: nil},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep}, on: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ep + "/v1/traces"}, on: true},
		{name: "sdk disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_SDK_DISABLED": "true"}},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_EXPORTER": "none"}},
		{name: "http/protobuf", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, on: true},
		{name: "grpc refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"},
		{name: "traces grpc refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, err: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"},
		{name: "json refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: "http/json is not supported"},
		{name: "console refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_EXPORTER": "console"}, err: "OTEL_TRACES_EXPORTER=console"},
		{name: "grpc without endpoint is off", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tracing.Read(env(tc.env))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.on, s.On, s.Why)
			require.NotEmpty(t, s.Why)
		})
	}
}

// TestNewOffIsNil: without an endpoint New builds nothing, and a nil
// Tracing is safe to use.
func TestNewOffIsNil(t *testing.T) {
	tr, err := tracing.New(context.Background(), env(nil))
	require.NoError(t, err)
	require.Nil(t, tr)
	require.Nil(t, tr.TracerProvider())
	require.NoError(t, tr.Shutdown(context.Background()))
	_, err = tracing.New(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}))
	require.Error(t, err)
}

// TestNewOn builds a provider from the variables, and its Shutdown
// returns.
func TestNewOn(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tr, err := tracing.New(context.Background(), nil)
	require.NoError(t, err)
	require.NotNil(t, tr.TracerProvider())
	require.Equal(t, "OTEL_EXPORTER_OTLP_ENDPOINT set", tr.Why)
	require.NoError(t, tr.Shutdown(context.Background()))
}

// TestLogHandler: a line logged inside a span carries its ids; one
// outside does not.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	log.InfoContext(ctx, "inside")
	span.End()
	log.Info("outside")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	var in, out map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &in))
	require.NoError(t, json.Unmarshal(lines[1], &out))
	require.Equal(t, span.SpanContext().TraceID().String(), in["trace_id"])
	require.Equal(t, span.SpanContext().SpanID().String(), in["span_id"])
	require.Equal(t, "test", in["component"])
	require.NotContains(t, out, "trace_id")
	require.NotContains(t, out, "span_id")
}

// TestTransport: off, the transport is the one given; on, each request is
// a client span whose traceparent the server receives.
func TestTransport(t *testing.T) {
	base := &http.Transport{}
	require.Same(t, http.RoundTripper(base), tracing.Transport(base, nil))
	hc := &http.Client{}
	require.Same(t, hc, tracing.Client(hc, nil))

	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("Traceparent") }))
	defer srv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	traced := tracing.Client(&http.Client{Transport: base}, tp)
	require.Same(t, http.RoundTripper(base), tracing.BaseTransport(traced.Transport))
	ctx, parent := tp.Tracer("t").Start(context.Background(), "parent")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	res, err := traced.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	parent.End()
	spans := rec.Ended()
	require.Len(t, spans, 2)
	client := spans[0]
	require.Equal(t, trace.SpanKindClient, client.SpanKind())
	require.Equal(t, parent.SpanContext().SpanID(), client.Parent().SpanID())
	require.Equal(t, "00-"+client.SpanContext().TraceID().String()+"-"+client.SpanContext().SpanID().String()+"-01", <-got)
}

// TestHandler: off, the handler is the one given; on, a request with a
// traceparent is a server span, its child, named by the Pattern the
// handler set.
func TestHandler(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Pattern = "/api/jobs/:id"
		w.WriteHeader(http.StatusTeapot)
	})
	require.NotNil(t, tracing.Handler(h, nil))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := httptest.NewServer(tracing.Handler(h, tp))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/jobs/7", nil)
	require.NoError(t, err)
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req.Header.Set("Traceparent", "00-"+tid+"-"+sid+"-01")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	spans := rec.Ended()
	require.Len(t, spans, 1)
	s := spans[0]
	require.Equal(t, "GET /api/jobs/:id", s.Name())
	require.Equal(t, tid, s.SpanContext().TraceID().String())
	require.Equal(t, sid, s.Parent().SpanID().String())
	require.True(t, s.Parent().IsRemote())
	attrs := map[string]any{}
	for _, kv := range s.Attributes() {
		attrs[string(kv.Key)] = kv.Value.AsInterface()
	}
	require.EqualValues(t, 418, attrs["http.response.status_code"])
	require.Equal(t, "/api/jobs/:id", attrs["http.route"])
}
