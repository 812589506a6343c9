package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// wakeCounter is a Publisher that records the wake-ups (TriggerAt) asked
// for.
type wakeCounter struct {
	fakePublisher
	mu  sync.Mutex
	ats []time.Time
	// fail, when set, makes TriggerAt fail.
	fail bool
}

func (p *wakeCounter) TriggerAt(_ context.Context, at time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("qstash unreachable")
	}
	p.ats = append(p.ats, at)
	return nil
}

// wakeups returns the wake-ups asked for, in Unix seconds, in order.
func (p *wakeCounter) wakeups(t *testing.T) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	secs := make([]int64, len(p.ats))
	for i, at := range p.ats {
		require.Zero(t, at.Nanosecond(), "a wake-up is for a whole second")
		secs[i] = at.Unix()
	}
	slices.Sort(secs)
	return secs
}

// failWith makes every attempt of the bundle's record jobs ask for a retry
// after d (the backoff being shorter), or, for a payload {"snooze":true},
// snooze for d.
func failWith(x *bundle, d time.Duration) {
	x.rec.script = func(job *models.Job, _ int) (json.RawMessage, error) {
		var p struct{ Snooze bool }
		_ = json.Unmarshal(job.Payload, &p)
		if p.Snooze {
			return nil, jobs.Snooze(d)
		}
		return nil, jobs.RetryAfter(errors.New("try again"), d)
	}
}

// drainRetrying creates n jobs (the last one a snooze when snooze is set)
// and drains them on w; every one is put back with a due time.
func drainRetrying(t *testing.T, x *bundle, w *jobs.Worker, n int, snooze bool) {
	t.Helper()
	for i := 0; i < n; i++ {
		req := jobs.CreateRequest{}
		if snooze && i == n-1 {
			req.Payload = json.RawMessage(`{"snooze":true}`)
		}
		x.create(t, req)
	}
	sum, err := w.Drain(context.Background(), time.Minute)
	require.NoError(t, err)
	require.Equal(t, n, sum.Retried+sum.Snoozed, "every job is put back with a due time")
}

// shutdown shuts engines down: their wake-up publishes have ended then.
func shutdown(t *testing.T, engines ...*jobs.Engine) {
	t.Helper()
	for _, e := range engines {
		require.NoError(t, e.Shutdown(context.Background()))
	}
}

// Many retries (and a snooze) due in the same second, put back by two
// servers sharing one Redis, publish one wake-up between them, for that
// second.
func TestRetriesDueInOneSecondPublishOneWakeup(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		failWith(x, 5500*time.Millisecond)
		pub := &wakeCounter{}
		a := x.engine(jobs.Config{Publisher: pub, Backoff: func(int) time.Duration { return time.Millisecond }})
		c := x.engine(jobs.Config{Publisher: pub, Backoff: func(int) time.Duration { return time.Millisecond }})
		drainRetrying(t, x, a.Worker(), 10, true)
		drainRetrying(t, x, c.Worker(), 10, true)
		shutdown(t, a, c)
		require.Equal(t, []int64{x.clock.Now().Add(5 * time.Second).Unix()}, pub.wakeups(t),
			"one wake-up, for the second in which the retries fall due")
	})
}

// Retries due in different seconds publish one wake-up each.
func TestRetriesInDifferentSecondsPublishOneWakeupEach(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		failWith(x, 5500*time.Millisecond)
		pub := &wakeCounter{}
		e := x.engine(jobs.Config{Publisher: pub, Backoff: func(int) time.Duration { return time.Millisecond }})
		start := x.clock.Now()
		for i := 0; i < 3; i++ {
			drainRetrying(t, x, e.Worker(), 4, i == 1)
			x.clock.Advance(time.Second)
		}
		shutdown(t, e)
		want := []int64{start.Unix() + 5, start.Unix() + 6, start.Unix() + 7}
		require.Equal(t, want, pub.wakeups(t))
	})
}

// With triggers disabled, no wake-up is published.
func TestDisableTriggersPublishesNoWakeup(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		failWith(x, 5500*time.Millisecond)
		pub := &wakeCounter{}
		e := x.engine(jobs.Config{Publisher: pub, DisableTriggers: true, Backoff: func(int) time.Duration { return time.Millisecond }})
		drainRetrying(t, x, e.Worker(), 5, true)
		shutdown(t, e)
		require.Empty(t, pub.wakeups(t))
	})
}

// A wake-up whose publish failed is published by the next server whose
// retries fall due in that second: the failure does not hold the second.
func TestFailedWakeupLeavesTheSecondToAnotherServer(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		failWith(x, 5500*time.Millisecond)
		broken, ok := &wakeCounter{fail: true}, &wakeCounter{}
		a := x.engine(jobs.Config{Publisher: broken, Backoff: func(int) time.Duration { return time.Millisecond }})
		c := x.engine(jobs.Config{Publisher: ok, Backoff: func(int) time.Duration { return time.Millisecond }})
		drainRetrying(t, x, a.Worker(), 3, false)
		shutdown(t, a)
		drainRetrying(t, x, c.Worker(), 3, false)
		shutdown(t, c)
		require.Equal(t, []int64{x.clock.Now().Add(5 * time.Second).Unix()}, ok.wakeups(t))
	})
}

// In-process, with an interval far too long to matter, a retry runs
// within a second of its due time: the runner's timer wakes a drain.
func TestInProcessRetryRunsOnTime(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		reg := jobs.NewRegistry()
		var (
			mu     sync.Mutex
			starts []time.Time
		)
		reg.MustRegister("flaky", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			mu.Lock()
			defer mu.Unlock()
			starts = append(starts, time.Now())
			if len(starts) == 1 {
				return nil, errors.New("first attempt fails")
			}
			return json.RawMessage(`{}`), nil
		}))
		e, err := jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: quiet(),
			InProcess: true, InProcessInterval: time.Hour, Backoff: func(int) time.Duration { return 2 * time.Second }})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, e.Start(ctx))
		t.Cleanup(func() { require.NoError(t, e.Shutdown(context.Background())) })

		job, _, err := e.Service().Create(ctx, jobs.CreateRequest{UserID: "u", Type: "flaky"})
		require.NoError(t, err)
		var retryAt time.Time
		require.Eventually(t, func() bool {
			j, err := e.Service().Get(ctx, "u", job.ID)
			require.NoError(t, err)
			if j.Status == models.StatusPending && j.Attempts == 1 {
				retryAt = j.NextRunAt
			}
			return j.Status == models.StatusCompleted
		}, 10*time.Second, 10*time.Millisecond, "the retry runs long before the hour-long interval")
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, starts, 2)
		require.False(t, retryAt.IsZero(), "the retry's due time was seen")
		late := starts[1].Sub(retryAt)
		t.Logf("retry due %s after the first attempt started, started %s after its due time", retryAt.Sub(starts[0]).Round(time.Millisecond), late.Round(time.Millisecond))
		require.GreaterOrEqual(t, late, -time.Millisecond, "not before its time (the queue keeps milliseconds)")
		require.Less(t, late, time.Second, "within a second of its due time")
	})
}
