package jobs

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

func TestQueueOrderIsPriorityThenFIFO(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		rng := rand.New(rand.NewPCG(1, 2))
		// Priorities drawn so that the extremes and many ties occur.
		choices := []int{0, 999999, 1, 999998, 500000, 42}
		items := make([]queueItem, 1000)
		for i := range items {
			p := choices[rng.IntN(len(choices))]
			if rng.IntN(3) == 0 {
				p = rng.IntN(models.MaxPriority + 1)
			}
			items[i] = queueItem{ID: int64(i + 1), Priority: p}
		}
		// Enqueue one by one and in batches: order is the enqueue order.
		for i := 0; i < 500; i++ {
			require.NoError(t, q.Enqueue(ctx, items[i]))
		}
		require.NoError(t, q.Enqueue(ctx, items[500:]...))

		want := append([]queueItem(nil), items...)
		sort.SliceStable(want, func(i, j int) bool { return want[i].Priority > want[j].Priority })

		var got []int64
		for {
			ids, err := q.Claim(ctx, 1+rng.IntN(37), time.Minute)
			require.NoError(t, err)
			if len(ids) == 0 {
				break
			}
			got = append(got, ids...)
		}
		require.Len(t, got, len(want))
		for i := range want {
			require.Equalf(t, want[i].ID, got[i], "position %d: want job %d (priority %d)", i, want[i].ID, want[i].Priority)
		}
		d, err := q.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, Depth{Processing: 1000}, d)
	})
}

func TestQueueEnqueueIsIdempotent(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		require.NoError(t, q.Enqueue(ctx, queueItem{ID: 1, Priority: 5}, queueItem{ID: 2, Priority: 5}))
		require.NoError(t, q.Enqueue(ctx, queueItem{ID: 1, Priority: 5}))
		ids, err := q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2}, ids, "a second enqueue of job 1 must neither duplicate it nor move it back")
	})
}

func TestQueueDelayedJobsBecomeDueWithTheClock(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		q := newRedisQueue(b.Redis, b.Prefix, clock)
		require.NoError(t, q.Enqueue(ctx, queueItem{ID: 7, Priority: 1}))
		ids, err := q.Claim(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{7}, ids)

		// A retry in 30s: out of processing, not claimable before its time.
		require.NoError(t, q.EnqueueAt(ctx, clock.Now().Add(30*time.Second), queueItem{ID: 7, Priority: 1}))
		require.NoError(t, q.Enqueue(ctx, queueItem{ID: 8, Priority: 0}))
		n, err := q.PromoteDue(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		d, err := q.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, Depth{Pending: 1, Delayed: 1}, d)

		clock.Advance(30 * time.Second)
		n, err = q.PromoteDue(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		ids, err = q.Claim(ctx, 5, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{7, 8}, ids, "the promoted job keeps its priority")
	})
}

func TestQueueReleaseRemoveAndMissing(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		require.NoError(t, q.Enqueue(ctx, queueItem{ID: 1}, queueItem{ID: 2}, queueItem{ID: 3}))
		ids, err := q.Claim(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1}, ids)
		require.NoError(t, q.Release(ctx, queueItem{ID: 1}))
		require.NoError(t, q.Remove(ctx, 2))
		missing, err := q.Missing(ctx, []int64{1, 2, 3, 4})
		require.NoError(t, err)
		require.Equal(t, []int64{2, 4}, missing)
		ids, err = q.Claim(ctx, 5, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 3}, ids, "a released job goes back to the front of its priority")
		require.NoError(t, q.Ack(ctx, 3, 1))
		d, err := q.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, Depth{}, d)
	})
}

// TestMissingSeesAScoreOfZero: a released job of the highest priority has
// the score 0 in pending; it is there, not missing.
func TestMissingSeesAScoreOfZero(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		top := queueItem{ID: 9, Priority: models.MaxPriority}
		require.NoError(t, q.Enqueue(ctx, top, queueItem{ID: 10}))
		ids, err := q.Claim(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{9}, ids)
		require.NoError(t, q.Release(ctx, top))
		score, err := b.Redis.ZScore(ctx, q.Key("pending"), "9").Result()
		require.NoError(t, err)
		require.Zero(t, score)
		require.NoError(t, q.EnqueueAt(ctx, time.Now().Add(time.Hour), queueItem{ID: 11}))
		missing, err := q.Missing(ctx, []int64{9, 10, 11, 12})
		require.NoError(t, err)
		require.Equal(t, []int64{12}, missing)
	})
}
