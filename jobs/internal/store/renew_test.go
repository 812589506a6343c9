package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// TestRenewManyRenewsOnlyTheClaimsStillHeld renews the leases of several
// running jobs in one statement: those whose row still holds the fence's
// claim move to the new expiry; a reaped, a re-claimed, a stale-lease and
// a cancelled job are left as they are and missing from the result. A
// nil lease id matches any lease.
func TestRenewManyRenewsOnlyTheClaimsStillHeld(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		db := b.DB.Gorm
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		old := now.Add(10 * time.Second)
		leaseA, leaseB := "lease-a", "lease-b"
		row := func(status models.Status, attempts int, leaseID *string) models.Job {
			j := models.Job{UserID: "u1", Type: "t", Status: status, Payload: models.JSON(`{}`), Attempts: attempts, MaxAttempts: 3,
				NextRunAt: now, StartedAt: &now, CreatedAt: now, UpdatedAt: now, LeaseID: leaseID, LeaseExpiresAt: &old}
			require.NoError(t, db.Create(&j).Error)
			return j
		}
		held1 := row(models.StatusProcessing, 1, &leaseA)
		held2 := row(models.StatusProcessing, 2, &leaseA)
		anyLease := row(models.StatusProcessing, 1, &leaseB) // fence without a lease id
		reaped := row(models.StatusPending, 1, nil)
		reclaimed := row(models.StatusProcessing, 2, &leaseB) // the fence holds attempt 1
		otherLease := row(models.StatusProcessing, 1, &leaseB)
		cancelled := row(models.StatusCancelled, 1, &leaseA)

		var statements int
		count := func(*gorm.DB) { statements++ }
		require.NoError(t, db.Callback().Row().After("gorm:row").Register("test:count", count))
		require.NoError(t, db.Callback().Raw().After("gorm:raw").Register("test:count", count))

		f := func(j models.Job, attempt int, lease *string) store.Fence {
			return store.Fence{ID: j.ID, Attempt: attempt, LeaseID: lease}
		}
		until := now.Add(time.Minute)
		ids, err := store.New(db).RenewMany(ctx, []store.Fence{
			f(held1, 1, &leaseA), f(held2, 2, &leaseA), f(anyLease, 1, nil), f(reaped, 1, nil),
			f(reclaimed, 1, &leaseB), f(otherLease, 1, &leaseA), f(cancelled, 1, &leaseA),
		}, until)
		require.NoError(t, err)
		require.ElementsMatch(t, []int64{held1.ID, held2.ID, anyLease.ID}, ids)
		require.Equal(t, 1, statements, "one statement for every lease")

		for _, j := range []models.Job{held1, held2, anyLease} {
			var r models.Job
			require.NoError(t, db.Take(&r, j.ID).Error)
			require.NotNil(t, r.LeaseExpiresAt)
			require.True(t, r.LeaseExpiresAt.Equal(until), "job %d renewed: %v", j.ID, *r.LeaseExpiresAt)
			require.True(t, r.UpdatedAt.Equal(now), "a renewal does not touch updated_at")
		}
		for _, j := range []models.Job{reaped, reclaimed, otherLease, cancelled} {
			var r models.Job
			require.NoError(t, db.Take(&r, j.ID).Error)
			require.True(t, r.LeaseExpiresAt.Equal(old), "job %d untouched", j.ID)
			require.Equal(t, j.Status, r.Status)
		}

		ids, err = store.New(db).RenewMany(ctx, nil, until)
		require.NoError(t, err)
		require.Empty(t, ids)
		require.Equal(t, 1, statements, "nothing to renew, no statement")
	})
}
