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

// finish sets a job's status and completion time directly, as a drain
// would have left them, with an error for a failed one.
func (x *bundle) finish(t *testing.T, id int64, status models.Status, at time.Time, errText string) {
	t.Helper()
	require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Where("id = ?", id).
		Updates(map[string]any{"status": status, "completed_at": at.UTC(), "error": errText}).Error)
}

// TestStatsCountsByStatusTypeAndMinute: every unfinished job counts, a
// finished one only within the window; the minutes count the jobs that
// finished in each of the last 60; a user sees only their own.
func TestStatsCountsByStatusTypeAndMinute(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.registry.MustRegister("other", newRecorder())
		ctx := context.Background()
		x.clock.Advance(45 * time.Second) // within a minute, not at its start
		now := x.clock.Now()
		later := now.Add(time.Hour)

		x.create(t, jobs.CreateRequest{})
		x.create(t, jobs.CreateRequest{})
		x.create(t, jobs.CreateRequest{Type: "other"})
		x.create(t, jobs.CreateRequest{UserID: "user-2", ScheduledFor: &later})
		x.finish(t, x.create(t, jobs.CreateRequest{}).ID, models.StatusCompleted, now.Add(-30*time.Second), "")
		x.finish(t, x.create(t, jobs.CreateRequest{}).ID, models.StatusCompleted, now.Add(-90*time.Second), "")
		x.finish(t, x.create(t, jobs.CreateRequest{Type: "other"}).ID, models.StatusFailed, now.Add(-59*time.Minute), "boom")
		x.finish(t, x.create(t, jobs.CreateRequest{}).ID, models.StatusCancelled, now.Add(-2*time.Hour), "")
		x.finish(t, x.create(t, jobs.CreateRequest{}).ID, models.StatusCompleted, now.Add(-25*time.Hour), "")

		st, err := x.service.Stats(ctx, jobs.StatsRequest{UserID: jobs.Operator})
		require.NoError(t, err)
		require.Equal(t, []jobs.StatusTypeCount{
			{Status: models.StatusScheduled, Type: "record", Count: 1},
			{Status: models.StatusPending, Type: "other", Count: 1},
			{Status: models.StatusPending, Type: "record", Count: 2},
			{Status: models.StatusCompleted, Type: "record", Count: 2},
			{Status: models.StatusFailed, Type: "other", Count: 1},
			{Status: models.StatusCancelled, Type: "record", Count: 1},
		}, st.Counts, "the completed job of 25 hours ago is outside the 24-hour window")
		require.EqualValues(t, 3, st.Total(models.StatusPending))
		require.Equal(t, 24*time.Hour, st.Since)
		require.Len(t, st.Minutes, jobs.StatsMinutes)
		last := st.Minutes[len(st.Minutes)-1]
		require.True(t, last.Start.Equal(now.Truncate(time.Minute)), "the current minute is the last")
		require.Equal(t, jobs.MinuteCount{Start: last.Start, Completed: 1}, last)
		require.EqualValues(t, 1, st.Minutes[len(st.Minutes)-2].Completed, "90 s ago is the minute before")
		require.EqualValues(t, 1, st.Minutes[0].Failed, "59 minutes ago is the first minute")
		var sum jobs.MinuteCount
		for _, m := range st.Minutes {
			sum.Completed, sum.Failed, sum.Cancelled = sum.Completed+m.Completed, sum.Failed+m.Failed, sum.Cancelled+m.Cancelled
		}
		require.Equal(t, jobs.MinuteCount{Completed: 2, Failed: 1}, sum, "the cancel of 2 hours ago is not in the last hour")

		week, err := x.service.Stats(ctx, jobs.StatsRequest{UserID: jobs.Operator, Since: 7 * 24 * time.Hour})
		require.NoError(t, err)
		require.EqualValues(t, 3, week.Total(models.StatusCompleted))

		mine, err := x.service.Stats(ctx, jobs.StatsRequest{UserID: "user-2"})
		require.NoError(t, err)
		require.Equal(t, []jobs.StatusTypeCount{{Status: models.StatusScheduled, Type: "record", Count: 1}}, mine.Counts)

		_, err = x.service.Stats(ctx, jobs.StatsRequest{UserID: jobs.Operator, Since: time.Second})
		var ve *jobs.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "invalid_since", ve.Code)
	})
}

// TestListFilters: user, parent, creation time range and error text each
// narrow the list, alone and together; a user may not name another.
func TestListFilters(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		ctx := context.Background()
		start := x.clock.Now()
		a := x.create(t, jobs.CreateRequest{})
		x.clock.Advance(time.Minute)
		parent := x.create(t, jobs.CreateRequest{UserID: "user-2"})
		child1 := x.create(t, jobs.CreateRequest{UserID: "user-2", ParentID: &parent.ID})
		child2 := x.create(t, jobs.CreateRequest{UserID: "user-2", ParentID: &parent.ID})
		x.clock.Advance(time.Minute)
		c := x.create(t, jobs.CreateRequest{})
		x.finish(t, a.ID, models.StatusFailed, x.clock.Now(), "Upstream TIMEOUT after 30s")
		x.finish(t, child1.ID, models.StatusFailed, x.clock.Now(), "100%_done? no")
		x.finish(t, c.ID, models.StatusFailed, x.clock.Now(), "invalid token")

		ids := func(req jobs.ListRequest) []int64 {
			t.Helper()
			if req.UserID == "" {
				req.UserID = jobs.Operator
			}
			page, err := x.service.List(ctx, req)
			require.NoError(t, err)
			out := []int64{}
			for _, j := range page.Jobs {
				out = append(out, j.ID)
			}
			return out
		}
		require.Equal(t, []int64{child2.ID, child1.ID, parent.ID}, ids(jobs.ListRequest{User: "user-2"}))
		require.Equal(t, []int64{child2.ID, child1.ID}, ids(jobs.ListRequest{ParentID: parent.ID}))
		require.Equal(t, []int64{child1.ID}, ids(jobs.ListRequest{ParentID: parent.ID, Status: models.StatusFailed}))
		require.Equal(t, []int64{child2.ID, child1.ID, parent.ID}, ids(jobs.ListRequest{CreatedFrom: start.Add(time.Minute), CreatedTo: start.Add(2 * time.Minute)}))
		require.Equal(t, []int64{a.ID}, ids(jobs.ListRequest{CreatedTo: start.Add(time.Minute)}))
		require.Equal(t, []int64{a.ID}, ids(jobs.ListRequest{ErrorContains: "timeout"}), "any case")
		require.Equal(t, []int64{child1.ID}, ids(jobs.ListRequest{ErrorContains: "%_"}), "LIKE's wildcards match themselves")
		require.Empty(t, ids(jobs.ListRequest{ErrorContains: "_x"}))
		require.Equal(t, []int64{c.ID}, ids(jobs.ListRequest{ErrorContains: "token", User: "user-1", Status: models.StatusFailed}))
		require.Equal(t, []int64{c.ID, a.ID}, ids(jobs.ListRequest{UserID: "user-1", User: "user-1"}), "a user may name themself")

		_, err := x.service.List(ctx, jobs.ListRequest{UserID: "user-1", User: "user-2"})
		require.ErrorIs(t, err, jobs.ErrOperatorOnly)
		_, err = x.service.List(ctx, jobs.ListRequest{UserID: jobs.Operator, CreatedFrom: start, CreatedTo: start})
		var ve *jobs.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "invalid_time_range", ve.Code)
	})
}

// TestRetryMatchingRetriesExactlyTheFilteredFailedJobs: only the failed
// jobs of the filter are retried, a child with its parent, and a job that
// is not failed is left alone.
func TestRetryMatchingRetriesExactlyTheFilteredFailedJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.registry.MustRegister("other", newRecorder())
		ctx := context.Background()
		now := x.clock.Now()
		f1 := x.create(t, jobs.CreateRequest{})
		f2 := x.create(t, jobs.CreateRequest{UserID: "user-2"})
		fChild := x.create(t, jobs.CreateRequest{UserID: "user-2", ParentID: &f2.ID})
		other := x.create(t, jobs.CreateRequest{Type: "other"})
		cancelled := x.create(t, jobs.CreateRequest{})
		pending := x.create(t, jobs.CreateRequest{})
		for _, id := range []int64{f1.ID, f2.ID, fChild.ID, other.ID} {
			x.finish(t, id, models.StatusFailed, now, "boom")
		}
		x.finish(t, cancelled.ID, models.StatusCancelled, now, "")

		got, err := x.service.RetryMatching(ctx, jobs.Operator, jobs.ListRequest{Type: "record"})
		require.NoError(t, err)
		require.Equal(t, jobs.BulkRetry{Retried: []int64{f1.ID, f2.ID, fChild.ID}, Failed: []jobs.RetryFailure{}}, got)
		for _, id := range []int64{f1.ID, f2.ID, fChild.ID, pending.ID} {
			require.Equal(t, models.StatusPending, x.reload(t, id).Status)
		}
		require.Equal(t, models.StatusFailed, x.reload(t, other.ID).Status, "another type")
		require.Equal(t, models.StatusCancelled, x.reload(t, cancelled.ID).Status, "not failed")

		mine, err := x.service.RetryMatching(ctx, "user-1", jobs.ListRequest{Status: models.StatusCancelled})
		require.NoError(t, err)
		require.Equal(t, []int64{cancelled.ID}, mine.Retried)

		_, err = x.service.RetryMatching(ctx, "user-1", jobs.ListRequest{Status: models.StatusPending})
		var ve *jobs.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "invalid_status", ve.Code)
		none, err := x.service.RetryMatching(ctx, "user-2", jobs.ListRequest{})
		require.NoError(t, err)
		require.Empty(t, none.Retried, "user-2 has no failed job left")
	})
}
