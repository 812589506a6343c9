package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// hungWrites makes every outcome write of w's drains hang, deaf to its
// context, until the test ends: the worst a database can do.
func hungWrites(t *testing.T, w *Worker) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	w.testCompleter = func(c *completer) {
		c.apply = func(context.Context, []finishing) ([]store.Applied, error) {
			<-hang
			return nil, errors.New("hung write")
		}
	}
}

// TestDrainAnswersWhenItsWritesHang: a drain whose outcome writes never
// return answers within its budget plus drainAnswerMargin, with the
// outcome counted unrecorded and an error that wraps ErrUnavailable.
func TestDrainAnswersWhenItsWritesHang(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		quiet := slog.New(slog.DiscardHandler)
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		reg := NewRegistry()
		reg.MustRegister("quick", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet})
		_, _, err := svc.Create(ctx, CreateRequest{UserID: "u1", Type: "quick"})
		require.NoError(t, err)
		w := newWorker(workerConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet, JobTimeout: 100 * time.Millisecond})
		hungWrites(t, w)
		const budget = 300 * time.Millisecond
		began := time.Now()
		sum, err := w.Drain(ctx, budget)
		took := time.Since(began)
		require.ErrorIs(t, err, ErrUnavailable)
		require.Equal(t, 1, sum.Claimed, "%+v", sum)
		require.Equal(t, 1, sum.Unrecorded, "%+v", sum)
		require.Zero(t, sum.Completed)
		require.Less(t, took, budget+drainAnswerMargin+time.Second, "the drain answers within its budget and the margin")
		require.GreaterOrEqual(t, took, budget+drainAnswerMargin-100*time.Millisecond, "it waited for the write until the margin ended")
	})
}

// TestShutdownIsBoundedWhenReleasesHang: once the grace period is over,
// Shutdown gives up on a job whose release cannot be written within
// releaseTimeout, naming it, and the drain in flight answers at once.
func TestShutdownIsBoundedWhenReleasesHang(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		quiet := slog.New(slog.DiscardHandler)
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		reg := NewRegistry()
		started := make(chan struct{}, 1)
		reg.MustRegister("wait", HandlerFunc(func(ctx context.Context, _ *models.Job) (json.RawMessage, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}))
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet})
		job, _, err := svc.Create(ctx, CreateRequest{UserID: "u1", Type: "wait"})
		require.NoError(t, err)
		w := newWorker(workerConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet, JobTimeout: 10 * time.Second})
		hungWrites(t, w)
		type result struct {
			sum DrainSummary
			err error
		}
		drained := make(chan result, 1)
		go func() {
			sum, err := w.Drain(ctx, time.Minute)
			drained <- result{sum, err}
		}()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the job did not start")
		}
		const grace = 100 * time.Millisecond
		sctx, cancel := context.WithTimeout(ctx, grace)
		defer cancel()
		began := time.Now()
		err = w.Shutdown(sctx)
		took := time.Since(began)
		require.ErrorIs(t, err, ErrUnavailable)
		require.Contains(t, err.Error(), fmt.Sprint(job.ID), "the job not given back is named")
		require.Less(t, took, grace+releaseTimeout+time.Second)
		require.GreaterOrEqual(t, took, grace+releaseTimeout-50*time.Millisecond, "it waited releaseTimeout for the release")
		select {
		case r := <-drained:
			require.ErrorIs(t, r.err, ErrUnavailable)
			require.Equal(t, 1, r.sum.Unrecorded, "%+v", r.sum)
		case <-time.After(2 * time.Second):
			t.Fatal("the drain did not answer once Shutdown gave up")
		}
		var row models.Job
		require.NoError(t, b.DB.Gorm.Take(&row, job.ID).Error)
		require.Equal(t, models.StatusProcessing, row.Status, "left for the reaper")
	})
}
