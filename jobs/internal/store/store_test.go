package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// TestApplyManyKindsInOneBatch applies one transition of every kind, plus
// one whose fence no longer holds, in one Apply, and checks each row and
// the attempts history: the Postgres batch statement and the per-row
// statements elsewhere must write the same.
func TestApplyManyKindsInOneBatch(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		db := b.DB.Gorm
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		started := now.Add(-time.Minute)
		lease := "lease-1"
		running := func(attempts, maxAttempts int, leaseExpires time.Time) models.Job {
			j := models.Job{UserID: "u1", Type: "t", Status: models.StatusProcessing, Payload: models.JSON(`{}`),
				Attempts: attempts, MaxAttempts: maxAttempts, NextRunAt: started, StartedAt: &started, CreatedAt: started, UpdatedAt: started,
				LeaseID: &lease, LeaseExpiresAt: &leaseExpires, Error: "earlier", Checkpoint: models.JSON(`{"step":1}`), LostAttempts: 2}
			require.NoError(t, db.Create(&j).Error)
			return j
		}
		live := now.Add(time.Minute)
		expired := now.Add(-time.Second)
		completed := running(1, 3, live)
		retried := running(1, 3, live)
		failed := running(2, 3, live)
		snoozed := running(1, 3, live)
		released := running(1, 3, live)
		deferred := running(3, 3, live) // out of attempts: a deferral does not count
		lostRetry := running(3, 3, expired)
		lostFinal := running(1, 3, expired)
		require.NoError(t, db.Model(&lostFinal).Update("lost_attempts", 4).Error) // its 5th loss in a row
		lostRenewed := running(1, 3, live)                                        // renewed meanwhile: not lost
		stale := running(2, 3, live)                                              // claimed again since: attempt 1 is fenced out
		pending := models.Job{UserID: "u1", Type: "t", Status: models.StatusPending, Payload: models.JSON(`{}`), MaxAttempts: 3,
			NextRunAt: now, CreatedAt: now, UpdatedAt: now}
		require.NoError(t, db.Create(&pending).Error)
		other := "u2"

		f := func(j models.Job) store.Fence { return store.Fence{ID: j.ID, Attempt: j.Attempts, LeaseID: j.LeaseID} }
		retryAt := now.Add(30 * time.Second)
		wake := now.Add(time.Hour)
		updates := []store.Update{
			{Fence: f(completed), Transition: store.Completed(json.RawMessage(`{"ok":true}`))},
			{Fence: f(retried), Transition: store.Retry(retryAt, "503")},
			{Fence: f(failed), Transition: store.Failed("bad input")},
			{Fence: f(snoozed), Transition: store.Snoozed(wake)},
			{Fence: f(released), Transition: store.Released()},
			{Fence: f(lostRetry), Transition: store.Lost("lease expired", 5)},
			{Fence: f(lostFinal), Transition: store.Lost("lease expired", 5)},
			{Fence: f(lostRenewed), Transition: store.Lost("lease expired", 5)},
			{Fence: f(deferred), Transition: store.Deferred(wake, "429 slow down")},
			{Fence: store.Fence{ID: stale.ID, Attempt: 1, LeaseID: &lease}, Transition: store.Completed(nil)},
			{Fence: store.Fence{ID: pending.ID}, Transition: store.Cancelled(&other)}, // not u2's job
		}
		for i := range updates {
			updates[i].Now, updates[i].StartedAt = now, started
		}
		got, err := store.New(db).Apply(ctx, updates)
		require.NoError(t, err)
		var applied []bool
		for _, a := range got {
			applied = append(applied, a.Applied)
		}
		require.Equal(t, []bool{true, true, true, true, true, true, true, false, true, false, false}, applied)
		require.Equal(t, models.StatusPending, got[5].Status, "a lost job out of attempts is pending: the loss does not count")
		require.Equal(t, models.StatusFailed, got[6].Status, "a job lost 5 times in a row fails")
		require.Equal(t, models.StatusPending, got[8].Status, "a deferred job is pending")

		reload := func(j models.Job) models.Job {
			var r models.Job
			require.NoError(t, db.Take(&r, j.ID).Error)
			return r
		}
		same := func(want time.Time, got *time.Time, msg string) {
			t.Helper()
			require.NotNil(t, got, msg)
			require.True(t, want.Equal(*got), "%s: %v, want %v", msg, *got, want)
		}
		r := reload(completed)
		require.Equal(t, models.StatusCompleted, r.Status)
		require.JSONEq(t, `{"ok":true}`, string(r.Result))
		require.Empty(t, r.Error)
		require.Empty(t, r.Checkpoint, "a completed job's checkpoint is cleared")
		same(now, r.CompletedAt, "completed at")
		require.Nil(t, r.LeaseID)
		require.Nil(t, r.LeaseExpiresAt)
		require.True(t, r.UpdatedAt.Equal(now))
		require.Zero(t, r.LostAttempts, "a real outcome ends the lost streak")

		r = reload(retried)
		require.Equal(t, models.StatusPending, r.Status)
		require.Equal(t, "503", r.Error)
		require.Equal(t, 1, r.Attempts)
		require.True(t, r.NextRunAt.Equal(retryAt))
		require.Nil(t, r.CompletedAt)
		require.JSONEq(t, `{"step":1}`, string(r.Checkpoint), "a retry keeps its checkpoint")
		require.Zero(t, r.LostAttempts)

		r = reload(failed)
		require.Equal(t, models.StatusFailed, r.Status)
		require.Equal(t, "bad input", r.Error)
		same(now, r.CompletedAt, "failed at")
		require.Zero(t, r.LostAttempts)

		r = reload(deferred)
		require.Equal(t, models.StatusPending, r.Status)
		require.Equal(t, 2, r.Attempts, "a deferral does not count")
		require.Equal(t, "429 slow down", r.Error, "the reason it waits is visible")
		require.True(t, r.NextRunAt.Equal(wake))
		require.Zero(t, r.LostAttempts, "a deferral is a real outcome")
		require.Nil(t, r.CompletedAt)
		require.Nil(t, r.LeaseID)

		for _, j := range []models.Job{snoozed, released} {
			r = reload(j)
			require.Equal(t, models.StatusPending, r.Status)
			require.Equal(t, 0, r.Attempts, "the attempt does not count")
			require.Equal(t, "earlier", r.Error, "the error is kept")
			require.Nil(t, r.LeaseID)
			require.Equal(t, 2, r.LostAttempts, "the lost streak is kept")
		}
		require.True(t, reload(snoozed).NextRunAt.Equal(wake))
		require.True(t, reload(released).NextRunAt.Equal(now))

		r = reload(lostRetry)
		require.Equal(t, models.StatusPending, r.Status)
		require.Equal(t, "lease expired", r.Error)
		require.True(t, r.NextRunAt.Equal(now))
		require.Nil(t, r.CompletedAt)
		require.Equal(t, 2, r.Attempts, "the lost attempt does not count")
		require.Equal(t, 3, r.LostAttempts)
		r = reload(lostFinal)
		require.Equal(t, models.StatusFailed, r.Status)
		require.Equal(t, "worker lost repeatedly: 5 attempts in a row lost their lease", r.Error)
		require.Equal(t, 0, r.Attempts)
		require.Equal(t, 5, r.LostAttempts)
		same(now, r.CompletedAt, "lost for good at")
		require.True(t, r.NextRunAt.Equal(started), "unchanged")

		for _, j := range []models.Job{lostRenewed, stale} {
			r = reload(j)
			require.Equal(t, models.StatusProcessing, r.Status, "fenced out: unchanged")
			require.Equal(t, "earlier", r.Error)
		}
		require.Equal(t, models.StatusPending, reload(pending).Status, "another user's job is not cancelled")

		var history []models.JobAttempt
		require.NoError(t, db.Order("job_id").Find(&history).Error)
		outcomes := map[int64]string{}
		for _, h := range history {
			outcomes[h.JobID] = h.Outcome
			if h.JobID == lostRetry.ID {
				require.Equal(t, 3, h.Attempt, "a lost attempt is recorded with the number it ran as")
				require.Equal(t, "lease expired", h.Error)
			}
			same(started, h.StartedAt, "attempt started")
			require.True(t, h.FinishedAt.Equal(now))
		}
		require.Equal(t, map[int64]string{completed.ID: "completed", retried.ID: "retried", failed.ID: "failed",
			released.ID: "released", lostRetry.ID: "lost", lostFinal.ID: "lost", deferred.ID: "deferred"}, outcomes, "a snooze records no attempt")

		// Applied again, nothing changes: the fence makes a retry safe.
		again, err := store.New(db).Apply(ctx, updates)
		require.NoError(t, err)
		for i, a := range again {
			require.False(t, a.Applied, "update %d applied twice", i)
		}
		var n int64
		require.NoError(t, db.Model(&models.JobAttempt{}).Count(&n).Error)
		require.EqualValues(t, 7, n)

		// Cancelling the pending job as its owner works.
		owner := "u1"
		c, err := store.New(db).Apply(ctx, []store.Update{{Fence: store.Fence{ID: pending.ID}, Transition: store.Cancelled(&owner), Now: now}})
		require.NoError(t, err)
		require.True(t, c[0].Applied)
		require.Equal(t, models.StatusCancelled, c[0].Status)
	})
}

// TestClaimIsSafeToRetry: a claim tried again with the same lease id, as
// after a connection lost before its reply, returns the rows the first try
// claimed, without counting their attempt twice, and claims no row that
// another lease holds.
func TestClaimIsSafeToRetry(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		db := b.DB.Gorm
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		mk := func(status models.Status, lease *string) models.Job {
			j := models.Job{UserID: "u1", Type: "t", Status: status, Payload: models.JSON(`{"k":1}`), MaxAttempts: 3,
				NextRunAt: now, CreatedAt: now, UpdatedAt: now, LeaseID: lease, Error: "earlier"}
			require.NoError(t, db.Create(&j).Error)
			return j
		}
		other := "other-lease"
		a, c := mk(models.StatusPending, nil), mk(models.StatusPending, nil)
		held := mk(models.StatusProcessing, &other)
		s := store.New(db)
		ids := []int64{a.ID, c.ID, held.ID}
		first, err := s.Claim(ctx, ids, now, time.Minute, "lease-1")
		require.NoError(t, err)
		require.Len(t, first, 2)
		again, err := s.Claim(ctx, ids, now.Add(time.Second), time.Minute, "lease-1")
		require.NoError(t, err)
		require.Len(t, again, 2, "the retry returns what the first try claimed")
		for _, r := range again {
			require.Equal(t, models.StatusProcessing, r.Status)
			require.Equal(t, 1, r.Attempts, "the attempt is counted once")
			require.Equal(t, "lease-1", *r.LeaseID)
			require.JSONEq(t, `{"k":1}`, string(r.Payload))
			require.Equal(t, now, r.StartedAt.UTC(), "the start is the first try's")
			require.Empty(t, r.Error, "the previous error is not read back")
		}
		var row models.Job
		require.NoError(t, db.Take(&row, held.ID).Error)
		require.Equal(t, other, *row.LeaseID, "a row held by another lease is left alone")
	})
}
