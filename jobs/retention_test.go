package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestRetentionDeletesExactlyTheOldFinishedJobs: completed jobs go after 7
// days, failed and cancelled ones after 30, each with its children and
// attempts; an unfinished job, a parent with an unfinished child, and
// younger finished jobs stay.
func TestRetentionDeletesExactlyTheOldFinishedJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		ctx := context.Background()
		db := x.b.DB.Gorm
		day := 24 * time.Hour
		finished := func(status models.Status, age time.Duration, parent *int64) int64 {
			job := x.create(t, jobs.CreateRequest{ParentID: parent})
			at := x.clock.Now().Add(-age)
			require.NoError(t, db.Model(&models.Job{}).Where("id = ?", job.ID).
				Updates(map[string]any{"status": status, "completed_at": at}).Error)
			require.NoError(t, db.Create(&models.JobAttempt{JobID: job.ID, Attempt: 1, FinishedAt: at, Outcome: "completed", CreatedAt: at}).Error)
			return job.ID
		}
		oldDone := finished(models.StatusCompleted, 8*day, nil)
		oldDoneChild := finished(models.StatusCompleted, 8*day, &oldDone)
		youngDone := finished(models.StatusCompleted, 6*day, nil)
		oldFailed := finished(models.StatusFailed, 31*day, nil)
		oldCancelled := finished(models.StatusCancelled, 31*day, nil)
		youngFailed := finished(models.StatusFailed, 8*day, nil)
		busyParent := finished(models.StatusFailed, 40*day, nil)
		busyChild := x.create(t, jobs.CreateRequest{ParentID: &busyParent}).ID // still pending
		pending := x.create(t, jobs.CreateRequest{}).ID

		res, err := jobs.ReconcilerOf(x.eng).Run(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 3, res.Deleted, "three top-level jobs: the old completed one (with its child), the old failed and cancelled ones")

		var left []int64
		require.NoError(t, db.Model(&models.Job{}).Order("id").Pluck("id", &left).Error)
		require.ElementsMatch(t, []int64{youngDone, youngFailed, busyParent, busyChild, pending}, left)
		var attempts int64
		require.NoError(t, db.Model(&models.JobAttempt{}).Where("job_id IN ?", []int64{oldDone, oldDoneChild, oldFailed, oldCancelled}).Count(&attempts).Error)
		require.Zero(t, attempts, "attempts go with their jobs")

		res, err = jobs.ReconcilerOf(x.eng).Run(ctx)
		require.NoError(t, err)
		require.Zero(t, res.Deleted, "nothing more is old enough")
	})
}
