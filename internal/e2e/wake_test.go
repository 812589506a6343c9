package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// A retry runs on time through QStash alone: the first attempt fails with
// a retry due in 3 s, and with no other create, schedule or in-process
// worker, the wake-up message (Not-Before the second the retry falls in)
// starts a drain that runs the second attempt within a second of its due
// time, never before it.
func TestRetryWakesThroughQStashOnTime(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		var (
			mu     sync.Mutex
			starts []time.Time
		)
		s := newSystem(t, b, options{realClock: true, trigger: true,
			backoff: func(int) time.Duration { return 3 * time.Second },
			register: func(reg *jobs.Registry) {
				reg.MustRegister("flaky", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
					mu.Lock()
					defer mu.Unlock()
					starts = append(starts, time.Now())
					if len(starts) == 1 {
						return nil, errors.New("first attempt fails")
					}
					return json.RawMessage(`{}`), nil
				}))
			}})
		ctx := context.Background()
		job, _, err := s.service.Create(ctx, jobs.CreateRequest{UserID: "alice", Type: "flaky"})
		require.NoError(t, err)

		// The create's trigger runs the first attempt; its retry is due
		// at nextRunAt.
		var retryAt time.Time
		require.Eventually(t, func() bool {
			j, err := s.service.Get(ctx, "alice", job.ID)
			require.NoError(t, err)
			if j.Status == models.StatusPending && j.Attempts == 1 {
				retryAt = j.NextRunAt
			}
			return j.Status == models.StatusCompleted
		}, 20*time.Second, 10*time.Millisecond, "the retry runs (no per-minute schedule is set up)")
		require.False(t, retryAt.IsZero(), "the retry's due time was seen")

		mu.Lock()
		require.Len(t, starts, 2)
		late := starts[1].Sub(retryAt)
		mu.Unlock()
		t.Logf("retry due %s, its attempt started %s after that", retryAt.Format("15:04:05.000"), late.Round(time.Millisecond))
		require.GreaterOrEqual(t, late, -time.Millisecond, "not before its time (the queue keeps milliseconds)")
		require.Less(t, late, time.Second, "within a second of its due time")

		// The wake-up's delivery is logged once its drain has answered.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ds, err := s.dev.WaitForDeliveries(wctx, 2)
		require.NoError(t, err)
		var bodies []string
		for _, d := range ds {
			bodies = append(bodies, string(d.Body))
		}
		require.Equal(t, []string{`{"trigger":"create"}`, `{"trigger":"wake"}`}, bodies,
			"the create's trigger, then the wake-up: nothing else called the worker")
	})
}
