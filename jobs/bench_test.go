package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/metrics"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

func benchEngine(b *testing.B, be testenv.Backend) (*jobs.Service, *jobs.Worker) {
	return benchEngineWith(b, be, nil)
}

// benchEngineWith is benchEngine with m as its metrics (nil: none), and
// its config adjusted by each of adjust.
func benchEngineWith(b *testing.B, be testenv.Backend, m jobs.Metrics, adjust ...func(*jobs.Config)) (*jobs.Service, *jobs.Worker) {
	reg := jobs.NewRegistry()
	reg.MustRegister("noop", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
		return json.RawMessage(`{}`), nil
	}))
	cfg := jobs.Config{DB: be.DB.Gorm, Redis: be.Redis, RedisPrefix: be.Prefix, Registry: reg, Logger: quiet(), Concurrency: 16, Metrics: m}
	for _, f := range adjust {
		f(&cfg)
	}
	eng, err := jobs.New(cfg)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, eng.Shutdown(context.Background())) })
	return eng.Service(), eng.Worker()
}

// BenchmarkCreate measures POST /api/jobs minus HTTP: validate, INSERT,
// enqueue. Reports jobs/s.
func BenchmarkCreate(b *testing.B) {
	testenv.RunB(b, func(b *testing.B, be testenv.Backend) {
		svc, _ := benchEngine(b, be)
		ctx := context.Background()
		payload := json.RawMessage(`{"url":"https://example.com/"}`)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if _, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u", Type: "noop", Payload: payload, Priority: i % 100}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	})
}

// BenchmarkCreateMany measures batch creates of jobs.MaxBatchSize jobs
// (the last one smaller): validate each, one COPY on Postgres, one
// enqueue. Reports jobs/s.
func BenchmarkCreateMany(b *testing.B) {
	testenv.RunB(b, func(b *testing.B, be testenv.Backend) {
		svc, _ := benchEngine(b, be)
		ctx := context.Background()
		payload := json.RawMessage(`{"url":"https://example.com/"}`)
		reqs := make([]jobs.CreateRequest, 0, jobs.MaxBatchSize)
		b.ResetTimer()
		start := time.Now()
		for done := 0; done < b.N; done += len(reqs) {
			reqs = reqs[:0]
			for i := range min(jobs.MaxBatchSize, b.N-done) {
				reqs = append(reqs, jobs.CreateRequest{UserID: "u", Type: "noop", Payload: payload, Priority: (done + i) % 100})
			}
			if _, err := svc.CreateMany(ctx, reqs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	})
}

// BenchmarkDrain measures a drain of b.N no-op jobs: claim (Lua), the
// processing UPDATE, the handler, the completed UPDATE and the ack; without
// metrics, and with the Prometheus metrics (internal/metrics), side by
// side. Reports jobs/s.
//
// Each variant gets backends of its own, so neither drains a table the
// other filled.
func BenchmarkDrain(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) {
		testenv.RunB(b, func(b *testing.B, be testenv.Backend) { benchDrain(b, be, nil) })
	})
	b.Run("metrics=on", func(b *testing.B) {
		testenv.RunB(b, func(b *testing.B, be testenv.Backend) { benchDrain(b, be, metrics.New()) })
	})
}

// benchDrain drains b.N no-op jobs through an engine with m (and its
// config adjusted by adjust).
func benchDrain(b *testing.B, be testenv.Backend, m jobs.Metrics, adjust ...func(*jobs.Config)) {
	svc, w := benchEngineWith(b, be, m, adjust...)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u", Type: "noop", Priority: i % 100}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	sum, err := w.Drain(ctx, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	if sum.Completed != b.N {
		b.Fatalf("completed %d of %d", sum.Completed, b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}
