package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// drainRig is a Service and a Worker on one backend, with a no-op type
// "noop" that counts its runs.
type drainRig struct {
	queue  *redisQueue
	svc    *Service
	worker *Worker
	runs   atomic.Int64
}

func newDrainRig(t *testing.T, b testenv.Backend, withReconciler bool) *drainRig {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	r := &drainRig{queue: newRedisQueue(b.Redis, b.Prefix, nil)}
	reg := NewRegistry()
	reg.MustRegister("noop", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
		r.runs.Add(1)
		return json.RawMessage(`{}`), nil
	}))
	r.svc = newService(serviceConfig{DB: b.DB.Gorm, Queue: r.queue, Registry: reg, Logger: quiet})
	cfg := workerConfig{DB: b.DB.Gorm, Queue: r.queue, Registry: reg, Logger: quiet, JobTimeout: 10 * time.Second, Concurrency: 8}
	if withReconciler {
		cfg.reconciler = newReconciler(reconcilerConfig{DB: b.DB.Gorm, Queue: r.queue, Logger: quiet})
	}
	r.worker = newWorker(cfg)
	return r
}

func (r *drainRig) create(t *testing.T, n int) []int64 {
	t.Helper()
	reqs := make([]CreateRequest, n)
	for i := range reqs {
		reqs[i] = CreateRequest{UserID: "u1", Type: "noop"}
	}
	created, err := r.svc.CreateMany(context.Background(), reqs)
	require.NoError(t, err)
	ids := make([]int64, n)
	for i, c := range created {
		ids[i] = c.Job.ID
	}
	return ids
}

func (r *drainRig) status(t *testing.T, b testenv.Backend, id int64) models.Status {
	t.Helper()
	var row models.Job
	require.NoError(t, b.DB.Gorm.Select("status").First(&row, id).Error)
	return row.Status
}

// TestLingeringDrainRunsAJobCreatedAfterTheQueueEmptied: the in-process
// runner's drain, having emptied the queue, waits for a kick and runs the
// job created then, in the same drain; without a kick it ends after its
// linger.
func TestLingeringDrainRunsAJobCreatedAfterTheQueueEmptied(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		r := newDrainRig(t, b, false)
		r.create(t, 3)
		done := make(chan DrainSummary, 1)
		go func() {
			sum, err := r.worker.drainLingering(ctx, time.Minute, time.Minute)
			if err != nil {
				t.Errorf("drain: %v", err)
			}
			done <- sum
		}()
		deadline := time.Now().Add(10 * time.Second)
		for r.runs.Load() < 3 {
			require.True(t, time.Now().Before(deadline), "the first jobs did not run")
			time.Sleep(time.Millisecond)
		}
		late := r.create(t, 1)[0]
		r.worker.kick()
		for r.status(t, b, late) != models.StatusCompleted {
			require.True(t, time.Now().Before(deadline), "the job created after the queue emptied did not run")
			select {
			case sum := <-done:
				t.Fatalf("the drain ended before the late job ran: %+v", sum)
			default:
			}
			time.Sleep(time.Millisecond)
		}
		r.worker.Shutdown(ctx) // ends the linger
		select {
		case sum := <-done:
			require.Equal(t, 4, sum.Completed, "one drain ran all four")
		case <-time.After(10 * time.Second):
			t.Fatal("a lingering drain did not end at Shutdown")
		}

		// With no kick, a lingering drain ends after its linger.
		r2 := newDrainRig(t, b, false)
		r2.create(t, 1)
		start := time.Now()
		sum, err := r2.worker.drainLingering(ctx, time.Minute, 50*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		require.Less(t, time.Since(start), 10*time.Second)
	})
}

// TestDrainRunsTheJobsItsReconcilePassRestores: the reconcile pass runs
// beside the claims; a drain that starts on a wiped queue still runs every
// pending job (more than one page of the pass) before it reports the queue
// drained.
func TestDrainRunsTheJobsItsReconcilePassRestores(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		r := newDrainRig(t, b, true)
		const n = 1200
		r.create(t, n/2)
		r.create(t, n/2)
		keys, err := b.Redis.Keys(ctx, b.Prefix+"*").Result()
		require.NoError(t, err)
		require.NotEmpty(t, keys)
		require.NoError(t, b.Redis.Del(ctx, keys...).Err(), "the queue is wiped")
		sum, err := r.worker.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, n, sum.Reenqueued)
		require.Equal(t, n, sum.Completed, "the restored jobs ran in the same drain")
		require.Zero(t, sum.Remaining)
		require.EqualValues(t, n, r.runs.Load())
	})
}

// TestReconcileKeepsTheLeaseEntryOfAClaimInFlight: a job whose id Redis
// holds in processing while its row is still pending is being claimed (the
// claim's UPDATE has not landed yet) — or its claim died. The pass leaves
// the entry while its lease runs (dropping it let the pass enqueue the job
// a second time beside the claim), and drops and re-enqueues it once the
// lease has run out.
func TestReconcileKeepsTheLeaseEntryOfAClaimInFlight(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		quiet := slog.New(slog.DiscardHandler)
		clock := NewManualClock(time.Now().UTC())
		q := newRedisQueue(b.Redis, b.Prefix, clock)
		reg := NewRegistry()
		reg.MustRegister("noop", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Clock: clock, Logger: quiet})
		job, _, err := svc.Create(ctx, CreateRequest{UserID: "u1", Type: "noop"})
		require.NoError(t, err)
		ids, err := q.Claim(ctx, 1, time.Minute) // the Redis half of a claim
		require.NoError(t, err)
		require.Equal(t, []int64{job.ID}, ids)
		rec := newReconciler(reconcilerConfig{DB: b.DB.Gorm, Queue: q, Clock: clock, Logger: quiet})
		where := func() string {
			m, err := q.Members(ctx)
			require.NoError(t, err)
			return m[job.ID]
		}

		res, err := rec.Run(ctx)
		require.NoError(t, err)
		require.Zero(t, res.Dropped, "the lease still runs")
		require.Zero(t, res.Enqueued)
		require.Equal(t, "processing", where())

		clock.Advance(time.Minute + time.Second)
		res, err = rec.Run(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, res.Dropped, "the lease ran out: the claim never reached the row")
		require.Equal(t, 1, res.Enqueued)
		require.Equal(t, "pending", where())
	})
}
