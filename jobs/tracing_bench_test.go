package jobs_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// BenchmarkDrainTraced is BenchmarkDrain with tracing on: every create,
// the drain and each attempt a span, batched to the OTLP/HTTP exporter
// and sent to a collector that discards them. Compare with
// BenchmarkDrain/metrics=off (tracing off). Reports jobs/s.
func BenchmarkDrainTraced(b *testing.B) {
	testenv.RunB(b, func(b *testing.B, be testenv.Backend) {
		discard := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		b.Cleanup(discard.Close)
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(discard.URL+"/v1/traces"))
		require.NoError(b, err)
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
		b.Cleanup(func() { require.NoError(b, tp.Shutdown(context.Background())) })
		benchDrain(b, be, nil, func(cfg *jobs.Config) { cfg.TracerProvider = tp })
	})
}
