package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestAChildWhoseSiblingsRunLeavesItsParentAsleep runs the children one at
// a time: when the second child runs, the first has finished, and the
// parent must still be asleep — woken only by the last child.
func TestAChildWhoseSiblingsRunLeavesItsParentAsleep(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		spawned := 0
		x.registry.MustRegister("fan_out", fanOut{&spawned})
		parent := x.create(t, jobs.CreateRequest{Type: "fan_out", Payload: json.RawMessage(`{"n":3}`)})
		// The parent as each child saw it while it ran: still processing
		// (its snooze not yet written: a slot frees before its job's
		// outcome is written) or asleep, never due.
		var seen []models.Job
		x.rec.script = func(job *models.Job, call int) (json.RawMessage, error) {
			seen = append(seen, x.reload(t, parent.ID))
			return json.RawMessage(job.Payload), nil
		}
		sum, err := x.worker(jobs.Config{Concurrency: 1}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Len(t, seen, 3)
		for i, p := range seen {
			asleep := p.Status == models.StatusProcessing || (p.Status == models.StatusPending && p.NextRunAt.After(x.clock.Now()))
			require.True(t, asleep, "child %d ran with the parent woken early (status %s, next run %s)", i, p.Status, p.NextRunAt)
		}
		require.Equal(t, 1, sum.Snoozed, "the parent waited once")
		row := x.reload(t, parent.ID)
		require.Equal(t, models.StatusCompleted, row.Status, "the last child woke the parent")
		require.Equal(t, 1, row.Attempts)
		require.Equal(t, 6, spawned, "the parent ran twice: once to spawn, once to collect")
	})
}

// TestParentWhoseChildrenFinishBeforeItsSnoozeIsWoken covers the other
// order: every child finishes while the parent's attempt is still running
// (so no child can wake it), and only then is its snooze recorded. The
// parent must run again at once, not after its poll interval.
func TestParentWhoseChildrenFinishBeforeItsSnoozeIsWoken(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		spawnedCh := make(chan struct{}, 1)
		childrenDone := make(chan struct{})
		runs := 0
		x.registry.MustRegister("slow_parent", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
			runs++
			if _, err := jobs.SpawnChildren(ctx, []jobs.ChildSpec{
				{Type: "record", Payload: json.RawMessage(`{"i":0}`)},
				{Type: "record", Payload: json.RawMessage(`{"i":1}`)},
			}); err != nil {
				return nil, err
			}
			children, err := jobs.AwaitChildren(ctx, time.Hour)
			if err == nil {
				return json.Marshal(len(children))
			}
			if runs > 1 {
				return nil, fmt.Errorf("woken before its children finished: %w", err)
			}
			spawnedCh <- struct{}{}
			select {
			case <-childrenDone:
			case <-time.After(30 * time.Second):
				return nil, errors.New("children did not finish")
			}
			return nil, err // the snooze, recorded after the children finished
		}))
		parent := x.create(t, jobs.CreateRequest{Type: "slow_parent", Payload: json.RawMessage(`{}`)})
		// The first drain has one slot, which the parent holds: it cannot
		// run the children itself.
		w := x.worker(jobs.Config{Concurrency: 1})

		type result struct {
			sum jobs.DrainSummary
			err error
		}
		first := make(chan result, 1)
		go func() {
			sum, err := w.Drain(ctx, time.Minute)
			first <- result{sum, err}
		}()
		select {
		case <-spawnedCh:
		case <-time.After(30 * time.Second):
			t.Fatal("the parent did not spawn its children")
		}
		// A second drain runs the children while the parent's first
		// attempt is still in its handler.
		sum2, err := x.worker(jobs.Config{Concurrency: 2}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, sum2.Completed, "the second drain ran both children")
		close(childrenDone)

		var r result
		select {
		case r = <-first:
		case <-time.After(30 * time.Second):
			t.Fatal("the first drain did not end")
		}
		require.NoError(t, r.err)
		require.Equal(t, 1, r.sum.Snoozed)
		row := x.reload(t, parent.ID)
		require.Equal(t, models.StatusCompleted, row.Status, "the parent ran again at once, in the same drain")
		require.JSONEq(t, `2`, string(row.Result))
		require.Equal(t, 2, runs)
	})
}

// TestAUserKeyNeverBecomesAChild: a user who creates a job under the key
// jobhook gives a parent's first child must not have it adopted by that
// parent. User keys and child keys are separate spaces.
func TestAUserKeyNeverBecomesAChild(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		spawned := 0
		x.registry.MustRegister("fan_out", fanOut{&spawned})
		x.rec.script = func(job *models.Job, call int) (json.RawMessage, error) { return json.RawMessage(job.Payload), nil }
		parent := x.create(t, jobs.CreateRequest{Type: "fan_out", Payload: json.RawMessage(`{"n":2}`)})
		squatter := x.create(t, jobs.CreateRequest{Payload: json.RawMessage(`{"squatter":true}`),
			IdempotencyKey: fmt.Sprintf("child:%d:0", parent.ID)})

		_, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		row := x.reload(t, parent.ID)
		require.Equal(t, models.StatusCompleted, row.Status)
		require.JSONEq(t, `[{"i":0},{"i":1}]`, string(row.Result), "the parent's own children, not the user's job")
		var children []models.Job
		require.NoError(t, b.DB.Gorm.Where("parent_id = ?", parent.ID).Order("id").Find(&children).Error)
		require.Len(t, children, 2)
		require.NotContains(t, []int64{children[0].ID, children[1].ID}, squatter.ID)
		own := x.reload(t, squatter.ID)
		require.Nil(t, own.ParentID)
		require.JSONEq(t, `{"squatter":true}`, string(own.Payload))

		// The user's key still does its job in the user's space.
		again, created, err := x.service.Create(ctx, jobs.CreateRequest{UserID: "user-1", Type: "record",
			Payload: json.RawMessage(`{}`), IdempotencyKey: fmt.Sprintf("child:%d:0", parent.ID)})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, squatter.ID, again.ID)
	})
}
