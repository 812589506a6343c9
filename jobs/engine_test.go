package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestNewNamesEveryProblem: a bad config is refused with every problem
// named at once, not the first one only.
func TestNewNamesEveryProblem(t *testing.T) {
	_, err := jobs.New(jobs.Config{Concurrency: -1, LeaseDuration: -time.Second, MaxPayloadBytes: -5})
	require.Error(t, err)
	for _, want := range []string{"DB is required", "Redis is required", "Registry is required",
		"Concurrency must not be negative", "LeaseDuration must not be negative", "MaxPayloadBytes must not be negative"} {
		require.Contains(t, err.Error(), want)
	}
}

// TestEngineStartRestoresTheQueue: a pending job the queue has never heard
// of (stored while Redis was away) is in the queue once Start returns.
func TestEngineStartRestoresTheQueue(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		now := time.Now().UTC()
		row := models.Job{UserID: "u1", Type: "noop", Status: models.StatusPending, Payload: models.JSON(`{}`), MaxAttempts: 3,
			NextRunAt: now, CreatedAt: now, UpdatedAt: now}
		require.NoError(t, b.DB.Gorm.Create(&row).Error)
		reg := jobs.NewRegistry()
		reg.MustRegister("noop", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
		e, err := jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: quiet()})
		require.NoError(t, err)
		d, err := e.Depth(ctx)
		require.NoError(t, err)
		require.Zero(t, d.Pending, "nothing is restored before Start")
		require.NoError(t, e.Start(ctx))
		t.Cleanup(func() { require.NoError(t, e.Shutdown(context.Background())) })
		d, err = e.Depth(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, d.Pending)
		require.ErrorContains(t, e.Start(ctx), "already started")
	})
}

// TestEngineInProcess: with InProcess, a created job runs without anyone
// calling Drain, and Shutdown stops the loops in time.
func TestEngineInProcess(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		ran := make(chan int64, 1)
		reg := jobs.NewRegistry()
		reg.MustRegister("noop", jobs.HandlerFunc(func(_ context.Context, job *models.Job) (json.RawMessage, error) {
			ran <- job.ID
			return json.RawMessage(`{"ok":true}`), nil
		}))
		e, err := jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: quiet(),
			InProcess: true, InProcessInterval: time.Hour})
		require.NoError(t, err)
		require.NoError(t, e.Start(ctx))
		job, created, err := e.Service().Create(ctx, jobs.CreateRequest{UserID: "u1", Type: "noop"})
		require.NoError(t, err)
		require.True(t, created)
		select {
		case id := <-ran:
			require.Equal(t, job.ID, id)
		case <-time.After(10 * time.Second):
			t.Fatal("the created job did not run within 10s: the create did not kick the in-process runner")
		}
		require.Eventually(t, func() bool {
			got, err := e.Service().Get(ctx, "u1", job.ID)
			return err == nil && got.Status == models.StatusCompleted
		}, 10*time.Second, 5*time.Millisecond)
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		require.NoError(t, e.Shutdown(sctx))
	})
}

// TestDrainReportsItsDuration: the summary says how long the drain took
// (it used to be set after the summary was returned, so it was always 0).
func TestDrainReportsItsDuration(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		reg := jobs.NewRegistry()
		reg.MustRegister("slow", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			time.Sleep(30 * time.Millisecond) // the work being measured, not a wait for it
			return nil, nil
		}))
		e, err := jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: quiet()})
		require.NoError(t, err)
		_, _, err = e.Service().Create(ctx, jobs.CreateRequest{UserID: "u1", Type: "slow"})
		require.NoError(t, err)
		sum, err := e.Worker().Drain(ctx, 2*time.Minute) // fits the default job timeout
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		require.GreaterOrEqual(t, sum.DurationMs, int64(30))
	})
}
