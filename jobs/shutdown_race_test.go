package jobs_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestShutdownWhileDrainsClaim starts Shutdown while several drains are
// claiming and running short jobs, so that claims race with the start of
// shutdown (run it with -race: Shutdown once waited on a WaitGroup that
// drains could still add to). No handler may start after Shutdown
// returned, and every job ends completed or back in pending, none stuck
// in processing.
func TestShutdownWhileDrainsClaim(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		const n = 400
		x.seed(t, n, nil)
		var (
			shutDown     atomic.Bool
			lateStarts   atomic.Int64
			started      atomic.Int64
			firstStarted = make(chan struct{})
			once         sync.Once
		)
		x.rec.script = func(job *models.Job, call int) (json.RawMessage, error) {
			if shutDown.Load() {
				lateStarts.Add(1)
			}
			if started.Add(1) >= 20 {
				once.Do(func() { close(firstStarted) })
			}
			time.Sleep(time.Millisecond) // a little work
			return json.RawMessage(`{}`), nil
		}
		w := x.worker(jobs.Config{Concurrency: 4})
		var drains sync.WaitGroup
		for range 3 {
			drains.Add(1)
			go func() {
				defer drains.Done()
				_, _ = w.Drain(ctx, time.Minute)
			}()
		}
		select {
		case <-firstStarted:
		case <-time.After(30 * time.Second):
			t.Fatal("the drains did not start")
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		w.Shutdown(sctx)
		shutDown.Store(true)
		drains.Wait()

		require.Zero(t, lateStarts.Load(), "a handler started after Shutdown returned")
		require.Zero(t, x.countStatus(t, models.StatusProcessing), "no job is left processing")
		require.EqualValues(t, n, x.countStatus(t, models.StatusCompleted)+x.countStatus(t, models.StatusPending))
	})
}
