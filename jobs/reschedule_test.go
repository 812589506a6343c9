package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// TestRescheduleMovesTheExpiryWithTheStart: a job moved a day later keeps
// as long to wait as it had (its expiry moves a day too); a job moved
// earlier keeps its expiry.
func TestRescheduleMovesTheExpiryWithTheStart(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		ctx := context.Background()
		at := x.clock.Now().Add(time.Hour)
		job := x.create(t, jobs.CreateRequest{ScheduledFor: &at})
		expires := x.reload(t, job.ID).ExpiresAt
		require.NotNil(t, expires)
		require.WithinDuration(t, at.Add(jobs.DefaultMaxWait), *expires, time.Second)

		_, err := x.service.Reschedule(ctx, "user-1", job.ID, at.Add(24*time.Hour))
		require.NoError(t, err)
		later := x.reload(t, job.ID).ExpiresAt
		require.WithinDuration(t, expires.Add(24*time.Hour), *later, time.Second, "moved a day later, it may wait as long as before")

		_, err = x.service.Reschedule(ctx, "user-1", job.ID, at)
		require.NoError(t, err)
		require.WithinDuration(t, *later, *x.reload(t, job.ID).ExpiresAt, time.Second, "moved earlier, the expiry stays")
	})
}
