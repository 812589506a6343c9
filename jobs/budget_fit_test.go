package jobs_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// timedJob is a job type with a timeout of its own that counts its runs.
type timedJob struct {
	timeout time.Duration
	runs    atomic.Int32
}

func (j *timedJob) Handle(context.Context, *models.Job) (json.RawMessage, error) {
	j.runs.Add(1)
	return nil, nil
}

func (j *timedJob) Timeout() time.Duration { return j.timeout }

// TestDrainLeavesAJobWhoseTimeoutDoesNotFit: a drain starts a job only if
// the job's own timeout fits in the rest of its budget. A short drain
// gives a long job back unrun (pending, its attempt not counted, no
// history, first in the queue again), says so in leftForTime, and stops
// claiming; a drain whose budget fits it runs it.
func TestDrainLeavesAJobWhoseTimeoutDoesNotFit(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		long := &timedJob{timeout: 5 * time.Second}
		short := &timedJob{timeout: 100 * time.Millisecond}
		x.registry.MustRegister("long", long)
		x.registry.MustRegister("short", short)
		w := x.worker(jobs.Config{Concurrency: 1})
		longJob := x.create(t, jobs.CreateRequest{Type: "long", Priority: 10})
		shortJob := x.create(t, jobs.CreateRequest{Type: "short", Priority: 1})

		sum, err := w.Drain(ctx, 2*time.Second)
		require.NoError(t, err)
		require.Equal(t, 1, sum.LeftForTime, "the long job is left: %+v", sum)
		require.Zero(t, sum.Claimed, "nothing ran: %+v", sum)
		require.Zero(t, long.runs.Load(), "the long job did not start")
		require.Zero(t, short.runs.Load(), "the drain stopped claiming once a job did not fit")
		require.EqualValues(t, 2, sum.Remaining)

		var row models.Job
		require.NoError(t, b.DB.Gorm.Take(&row, longJob.ID).Error)
		require.Equal(t, models.StatusPending, row.Status)
		require.Zero(t, row.Attempts, "the attempt does not count")
		require.Nil(t, row.LeaseExpiresAt)
		var history int64
		require.NoError(t, b.DB.Gorm.Model(&models.JobAttempt{}).Where("job_id = ?", longJob.ID).Count(&history).Error)
		require.Zero(t, history, "no attempt is recorded")
		ids, err := x.queue.Claim(ctx, 1, time.Second)
		require.NoError(t, err)
		require.Equal(t, []int64{longJob.ID}, ids, "the long job keeps its place, first in the queue")
		require.NoError(t, x.queue.Release(ctx, jobs.Item{ID: longJob.ID, Priority: 10}))

		sum, err = w.Drain(ctx, 10*time.Second)
		require.NoError(t, err)
		require.Zero(t, sum.LeftForTime, "%+v", sum)
		require.Equal(t, 2, sum.Completed, "%+v", sum)
		require.EqualValues(t, 1, long.runs.Load())
		require.EqualValues(t, 1, short.runs.Load())
		for _, id := range []int64{longJob.ID, shortJob.ID} {
			var row models.Job
			require.NoError(t, b.DB.Gorm.Take(&row, id).Error)
			require.Equal(t, models.StatusCompleted, row.Status)
			require.Equal(t, 1, row.Attempts)
		}
	})
}

// TestDrainRunsTheJobsOfAClaimThatFit: in one claim, the jobs whose
// timeout fits run and the others are left.
func TestDrainRunsTheJobsOfAClaimThatFit(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		long := &timedJob{timeout: time.Minute}
		short := &timedJob{timeout: 100 * time.Millisecond}
		x.registry.MustRegister("long", long)
		x.registry.MustRegister("short", short)
		w := x.worker(jobs.Config{Concurrency: 8})
		x.create(t, jobs.CreateRequest{Type: "long", Priority: 10})
		for range 3 {
			x.create(t, jobs.CreateRequest{Type: "short"})
		}
		sum, err := w.Drain(ctx, 2*time.Second)
		require.NoError(t, err)
		require.Equal(t, 1, sum.LeftForTime, "%+v", sum)
		require.Equal(t, 3, sum.Completed, "%+v", sum)
		require.Equal(t, 3, sum.Claimed, "%+v", sum)
		require.Zero(t, long.runs.Load())
		require.EqualValues(t, 3, short.runs.Load())
	})
}
