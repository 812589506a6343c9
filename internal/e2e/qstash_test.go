package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/upstash/qstash-go"

	"github.com/jobhook/jobhook/internal/schedules"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

func loadDefaultSchedules(t *testing.T) *schedules.File {
	t.Helper()
	f, err := schedules.Load("../../" + schedules.DefaultFile)
	require.NoError(t, err)
	return f
}

// The committed per-minute schedule drains the queue; paused, it does not.
func TestDefaultScheduleDrainsAndPausedDoesNot(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		s := newSystem(t, b, options{})
		_, err := schedules.Sync(ctx, s.client, loadDefaultSchedules(t), s.server.URL, false)
		require.NoError(t, err)

		first := s.create(t, jobs.CreateRequest{})
		require.Equal(t, models.StatusPending, s.status(t, first.ID), "no trigger: only the schedule can run it")
		s.advance(t, time.Minute)
		require.Equal(t, models.StatusCompleted, s.status(t, first.ID))
		ds := s.dev.Deliveries()
		require.NotEmpty(t, ds)
		require.Equal(t, "jobhook-drain", ds[len(ds)-1].ScheduleID)
		require.Equal(t, http.StatusOK, ds[len(ds)-1].Status)

		require.NoError(t, s.client.Raw().Schedules().Pause("jobhook-drain"))
		second := s.create(t, jobs.CreateRequest{})
		before := len(s.dev.Deliveries())
		s.advance(t, 3*time.Minute)
		require.Equal(t, before, len(s.dev.Deliveries()), "a paused schedule does not fire")
		require.Equal(t, models.StatusPending, s.status(t, second.ID))

		require.NoError(t, s.client.Raw().Schedules().Resume("jobhook-drain"))
		s.advance(t, time.Minute)
		require.Equal(t, models.StatusCompleted, s.status(t, second.ID))
	})
}

// A scheduled job runs at its time through a delayed message, not before;
// a cancelled one never runs; a rescheduled one runs at the new time only.
func TestScheduledJobsRunAtTheirTime(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		s := newSystem(t, b, options{})
		at := s.clock.Now().Add(10 * time.Minute)
		onTime := s.create(t, jobs.CreateRequest{ScheduledFor: &at})
		cancelled := s.create(t, jobs.CreateRequest{ScheduledFor: &at})
		moved := s.create(t, jobs.CreateRequest{ScheduledFor: &at})
		require.Equal(t, models.StatusScheduled, onTime.Status)
		require.NotNil(t, onTime.QStashMessageID, "the delayed message id is stored")

		_, err := s.service.Cancel(ctx, "alice", cancelled.ID)
		require.NoError(t, err)
		later := at.Add(5 * time.Minute)
		_, err = s.service.Reschedule(ctx, "alice", moved.ID, later)
		require.NoError(t, err)

		s.advance(t, 10*time.Minute-time.Second)
		require.Equal(t, models.StatusScheduled, s.status(t, onTime.ID), "not before its time")
		s.advance(t, time.Second)
		require.Equal(t, models.StatusCompleted, s.status(t, onTime.ID))
		require.Equal(t, 1, s.calls.of(onTime.ID))
		require.Equal(t, models.StatusCancelled, s.status(t, cancelled.ID))
		require.Equal(t, models.StatusScheduled, s.status(t, moved.ID), "moved: not at the old time")

		s.advance(t, 5*time.Minute)
		require.Equal(t, models.StatusCompleted, s.status(t, moved.ID), "at the new time")
		s.advance(t, time.Hour)
		require.Zero(t, s.calls.of(cancelled.ID), "a cancelled job never runs")
		require.Equal(t, 1, s.calls.of(moved.ID))
		for _, d := range s.dev.Deliveries() {
			require.Equal(t, http.StatusOK, d.Status, "every delivery is accepted (signed, right URL)")
		}
	})
}

// QStash delivers at least once: the same delivery twice runs the job once.
func TestRepeatedDeliveryRunsTheJobOnce(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := newSystem(t, b, options{})
		at := s.clock.Now().Add(time.Minute)
		job := s.create(t, jobs.CreateRequest{ScheduledFor: &at})
		s.advance(t, time.Minute)
		require.Equal(t, models.StatusCompleted, s.status(t, job.ID))
		ds := s.dev.Deliveries()
		require.Len(t, ds, 1)

		// Replay it as QStash's retry would: same body, same signed headers.
		req, err := http.NewRequest(http.MethodPost, s.workerURL, bytes.NewReader(ds[0].Body))
		require.NoError(t, err)
		req.Header = ds[0].Header.Clone()
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		require.Equal(t, 1, s.calls.of(job.ID), "the job ran once")
	})
}

// A burst of creates publishes a bounded number of triggers: at most one
// leading and one trailing per one-second window, so ≤ 2·⌈D/1s⌉ + 2 for
// a burst lasting D.
func TestBurstOfCreatesPublishesBoundedTriggers(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := newSystem(t, b, options{trigger: true})
		start := time.Now()
		for i := 0; i < 1000; i++ {
			s.create(t, jobs.CreateRequest{})
		}
		elapsed := time.Since(start)
		bound := 2*int(math.Ceil(elapsed.Seconds())) + 2
		published := s.dev.Stats().Published
		t.Logf("1,000 creates in %s published %d triggers (bound %d)", elapsed.Round(time.Millisecond), published, bound)
		require.GreaterOrEqual(t, published, 1, "at least one trigger")
		require.LessOrEqual(t, published, bound)

		// The triggers drain the whole burst.
		s.advance(t, 2*time.Second)
		d, err := s.engine.Depth(context.Background())
		require.NoError(t, err)
		require.Zero(t, d.Pending)
	})
}

type failingPublisher struct{}

func (failingPublisher) PublishAt(context.Context, int64, time.Time) (string, error) {
	return "", errors.New("qstash unreachable")
}
func (failingPublisher) Cancel(context.Context, string) error {
	return errors.New("qstash unreachable")
}
func (failingPublisher) Trigger(context.Context, time.Duration) error {
	return errors.New("qstash unreachable")
}
func (failingPublisher) TriggerAt(context.Context, time.Time) error {
	return errors.New("qstash unreachable")
}

// If the delayed message cannot be published, the per-minute drain still
// runs the scheduled job, about a minute late at most.
func TestPublishFailureFallsBackToTheScheduledDrain(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := newSystem(t, b, options{publisher: func(*system) jobs.Publisher { return failingPublisher{} }, trigger: true})
		_, err := schedules.Sync(context.Background(), s.client, loadDefaultSchedules(t), s.server.URL, false)
		require.NoError(t, err)
		at := s.clock.Now().Add(90 * time.Second)
		scheduled := s.create(t, jobs.CreateRequest{ScheduledFor: &at})
		now := s.create(t, jobs.CreateRequest{})
		require.Nil(t, scheduled.QStashMessageID)

		s.advance(t, time.Minute)
		require.Equal(t, models.StatusCompleted, s.status(t, now.ID), "the failed trigger is covered by the schedule")
		require.Equal(t, models.StatusScheduled, s.status(t, scheduled.ID))
		s.advance(t, time.Minute)
		require.Equal(t, models.StatusCompleted, s.status(t, scheduled.ID), "promoted by the next per-minute drain")
	})
}

// schedules sync creates, is idempotent, removes a deleted entry, updates a
// changed one and leaves a foreign schedule alone.
func TestSchedulesSync(t *testing.T) {
	ctx := context.Background()
	s := newSystem(t, testenv.Embedded(t), options{})
	// A schedule jobhook did not create.
	foreignID, err := s.client.Raw().Schedules().Create(qstash.ScheduleOptions{Cron: "0 0 * * *", Destination: s.server.URL + "/somewhere-else"})
	require.NoError(t, err)

	two, err := schedules.Parse([]byte(`{"schedules":[
		{"name":"drain","cron":"* * * * *","path":"/api/workers"},
		{"name":"nightly","cron":"0 3 * * *","path":"/api/workers","body":{"source":"nightly"}}]}`))
	require.NoError(t, err)
	changes, err := schedules.Sync(ctx, s.client, two, s.server.URL, false)
	require.NoError(t, err)
	require.Equal(t, []string{"create", "create"}, ops(changes))

	changes, err = schedules.Sync(ctx, s.client, two, s.server.URL, false)
	require.NoError(t, err)
	require.Equal(t, []string{"keep", "keep"}, ops(changes), "a second sync changes nothing")

	one, err := schedules.Parse([]byte(`{"schedules":[{"name":"drain","cron":"*/2 * * * *","path":"/api/workers"}]}`))
	require.NoError(t, err)
	plan, err := schedules.Sync(ctx, s.client, one, s.server.URL, true)
	require.NoError(t, err)
	require.Equal(t, []string{"update", "delete"}, ops(plan))
	require.Len(t, s.dev.Schedules(), 3, "a dry run changes nothing")

	changes, err = schedules.Sync(ctx, s.client, one, s.server.URL, false)
	require.NoError(t, err)
	require.Equal(t, []string{"update", "delete"}, ops(changes))
	list, err := s.client.ListSchedules(ctx)
	require.NoError(t, err)
	got := map[string]string{}
	for _, sc := range list {
		got[sc.Id] = sc.Cron
	}
	require.Equal(t, map[string]string{"jobhook-drain": "*/2 * * * *", foreignID: "0 0 * * *"}, got, "the foreign schedule is untouched")
}

func ops(cs []schedules.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Op
	}
	return out
}

func loadSchedulesFile() (*schedules.File, error) {
	return schedules.Load("../../" + schedules.DefaultFile)
}

func syncSchedules(s *system, f *schedules.File) ([]schedules.Change, error) {
	return schedules.Sync(context.Background(), s.client, f, s.server.URL, false)
}
