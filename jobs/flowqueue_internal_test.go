package jobs

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// userItem is a queue item of user with flow keys.
func userItem(id int64, priority int, user string, keys ...string) queueItem {
	return queueItem{ID: id, Priority: priority, Meta: encodeMeta(user, "", keys)}
}

// claimAll claims batches of n until the queue answers none, and returns
// the ids in claim order.
func claimAll(t *testing.T, q *redisQueue, n int) []int64 {
	t.Helper()
	var got []int64
	for {
		c, err := q.ClaimBatch(context.Background(), n, time.Minute)
		require.NoError(t, err)
		if len(c.IDs) == 0 && !c.More {
			return got
		}
		got = append(got, c.IDs...)
	}
}

func TestQueueUsersTakeTurnsWithinAPriority(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		// a1..a3 for alice, then b1..b2 for bob, then c1 for carol, all at
		// one priority; then a high-priority job of bob's.
		require.NoError(t, q.Enqueue(ctx,
			userItem(1, 5, "alice"), userItem(2, 5, "alice"), userItem(3, 5, "alice"),
			userItem(4, 5, "bob"), userItem(5, 5, "bob"), userItem(6, 5, "carol")))
		require.NoError(t, q.Enqueue(ctx, userItem(7, 9, "bob")))
		got := claimAll(t, q, 1)
		// Priority first, exactly: bob's 7, which was bob's turn. Then
		// turns, each user's jobs in their order: alice, carol, bob
		// (behind carol, since he just had one), alice, bob, alice.
		require.Equal(t, []int64{7, 1, 6, 4, 2, 5, 3}, got)
	})
}

func TestQueueABurstCannotDelayAnotherUsersJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		burst := make([]queueItem, 5000)
		for i := range burst {
			burst[i] = userItem(int64(i+1), 0, "alice")
		}
		require.NoError(t, q.Enqueue(ctx, burst...))
		require.NoError(t, q.Enqueue(ctx, userItem(9999, 0, "bob")))
		first, err := q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Contains(t, first, int64(9999), "bob's job is in the first claim batch")
		require.Len(t, first, 10)
	})
}

func TestQueueConcurrencyLimitParksJobsUntilASlotFrees(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil, FlowLimit{Prefix: "ig:", Concurrency: 1})
		require.NoError(t, q.Enqueue(ctx,
			userItem(1, 5, "alice", "ig:1"), userItem(2, 5, "alice", "ig:1"), userItem(3, 5, "alice", "ig:1"),
			userItem(4, 5, "alice", "ig:2"), userItem(5, 5, "alice")))
		got, err := q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 4, 5}, got, "one job of ig:1 at a time; the others run")
		d, err := q.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, Depth{Pending: 2, Processing: 3}, d, "parked jobs are still pending")

		waits, err := q.Waiting(ctx, []*models.Job{{ID: 2, FlowKeys: models.FlowKeys{"ig:1"}}})
		require.NoError(t, err)
		require.Equal(t, &models.WaitingFor{Key: "ig:1", Reason: "concurrency limit 1 reached"}, waits[2])

		got, err = q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Empty(t, got, "ig:1's slot is still held")

		// Each way a job gives its slot back lets the next one run:
		// finished (Ack), put back (Release), reaped (Requeue).
		require.NoError(t, q.Ack(ctx, 1))
		got, err = q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{2}, got)
		require.NoError(t, q.Release(ctx, queueItem{ID: 2, Priority: 5}))
		got, err = q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{2}, got, "a released job is first again")
		require.NoError(t, q.Requeue(ctx, queueItem{ID: 2, Priority: 5}))
		got, err = q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{3}, got, "a reaped job goes behind the job that waited")
		require.NoError(t, q.EnqueueAt(ctx, time.Now().Add(time.Hour), queueItem{ID: 3, Priority: 5}))
		got, err = q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{2}, got, "a retried job gives its slot back")
	})
}

func TestQueueExpiredLeaseDoesNotHoldASlot(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		q := newRedisQueue(b.Redis, b.Prefix, clock, FlowLimit{Prefix: "fb:", Concurrency: 1})
		require.NoError(t, q.Enqueue(ctx, userItem(1, 5, "u", "fb:9"), userItem(2, 5, "u", "fb:9")))
		got, err := q.Claim(ctx, 10, time.Second)
		require.NoError(t, err)
		require.Equal(t, []int64{1}, got)
		// A renewal keeps the slot held past the first lease.
		clock.Advance(900 * time.Millisecond)
		require.NoError(t, q.RenewMany(ctx, clock.Now().Add(time.Second), 1))
		clock.Advance(900 * time.Millisecond)
		got, err = q.Claim(ctx, 10, time.Second)
		require.NoError(t, err)
		require.Empty(t, got, "the renewed lease still holds the slot")
		// Its worker died: once the lease ends the slot is free, before
		// the reaper gets to the job.
		clock.Advance(time.Second)
		c, err := q.ClaimBatch(ctx, 10, time.Second)
		require.NoError(t, err)
		require.Empty(t, c.IDs, "job 2 is parked and waits for the slot's owner to give it back")
		require.NoError(t, q.Requeue(ctx, queueItem{ID: 1, Priority: 5}))
		got, err = q.Claim(ctx, 10, time.Second)
		require.NoError(t, err)
		require.Equal(t, []int64{2}, got)
	})
}

func TestQueuePausedKeySetsItsJobsAsideUntilThePauseEnds(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		q := newRedisQueue(b.Redis, b.Prefix, clock)
		until := clock.Now().Add(2 * time.Minute)
		require.NoError(t, q.PauseFlow(ctx, "ig:1", until, "business use case usage 100%", 0))
		// A shorter pause does not shorten it.
		require.NoError(t, q.PauseFlow(ctx, "ig:1", clock.Now().Add(time.Second), "shorter", 0))
		require.NoError(t, q.Enqueue(ctx, userItem(1, 5, "a", "ig:1"), userItem(2, 5, "b", "ig:2"), userItem(3, 5, "c", "ig:1")))

		pending := []*models.Job{{ID: 1, FlowKeys: models.FlowKeys{"ig:1"}}, {ID: 2, FlowKeys: models.FlowKeys{"ig:2"}}}
		waits, err := q.Waiting(ctx, pending)
		require.NoError(t, err)
		u := until.UTC()
		require.Equal(t, &models.WaitingFor{Key: "ig:1", Until: &u, Reason: "business use case usage 100%"}, waits[1], "seen before any claim")
		require.Nil(t, waits[2])

		c, err := q.ClaimBatch(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{2}, c.IDs, "only the key that is not paused runs")
		require.Equal(t, until.UnixMilli(), c.WakeAt.UnixMilli(), "the claim names when the set-aside jobs may run")
		d, err := q.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, Depth{Processing: 1, Delayed: 2}, d)

		clock.Advance(2*time.Minute - time.Millisecond)
		n, err := q.PromoteDue(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		clock.Advance(time.Millisecond)
		n, err = q.PromoteDue(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		got, err := q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 3}, got, "after the pause, in their order")
	})
}

func TestQueueRateLimitSpacesStarts(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		q := newRedisQueue(b.Redis, b.Prefix, clock, FlowLimit{Prefix: "host:", Rate: 2, Interval: time.Second})
		items := make([]queueItem, 5)
		for i := range items {
			items[i] = userItem(int64(i+1), 5, "u", "host:example.com")
		}
		require.NoError(t, q.Enqueue(ctx, items...))
		c, err := q.ClaimBatch(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2}, c.IDs)
		require.Equal(t, clock.Now().Add(time.Second).UnixMilli(), c.WakeAt.UnixMilli())
		clock.Advance(time.Second)
		_, err = q.PromoteDue(ctx)
		require.NoError(t, err)
		c, err = q.ClaimBatch(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Len(t, c.IDs, 2, "two more in the next second")
	})
}

func TestQueueRemoveTakesAParkedJobOut(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil, FlowLimit{Prefix: "ig:", Concurrency: 1})
		require.NoError(t, q.Enqueue(ctx, userItem(1, 5, "a", "ig:1"), userItem(2, 5, "a", "ig:1"), userItem(3, 5, "a", "ig:1")))
		got, err := q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1}, got)
		require.NoError(t, q.Remove(ctx, 2))
		require.NoError(t, q.Ack(ctx, 1))
		got = claimAll(t, q, 10)
		require.Equal(t, []int64{3}, got, "the removed job never runs")
		members, err := q.Members(ctx)
		require.NoError(t, err)
		require.False(t, slices.Contains(mapKeys(members), 2))
	})
}

func mapKeys(m map[int64]string) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestQueueUnstickWakesJobsParkedBehindAFreeSlot(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil, FlowLimit{Prefix: "ig:", Concurrency: 1})
		require.NoError(t, q.Enqueue(ctx, userItem(1, 5, "a", "ig:1"), userItem(2, 5, "a", "ig:1")))
		got, err := q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{1}, got)
		n, err := q.Unstick(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "the slot is held: job 2 stays parked")
		// The slot is given back without the wake (as a bug would).
		require.NoError(t, b.Redis.ZRem(ctx, q.Key("run:ig:1"), "1").Err())
		n, err = q.Unstick(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		got, err = q.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{2}, got)
	})
}

func TestQueueOperatorHoldParksAKeyUntilResumed(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		q := newRedisQueue(b.Redis, b.Prefix, clock)
		require.NoError(t, q.HoldFlow(ctx, "ig:1", "account under review"))
		// A provider's pause does not end an operator's hold.
		require.NoError(t, q.PauseFlow(ctx, "ig:1", clock.Now().Add(time.Minute), "usage 100%", 0))
		require.NoError(t, q.Enqueue(ctx, userItem(1, 5, "a", "ig:1"), userItem(2, 5, "a", "ig:2"), userItem(3, 5, "b", "ig:1")))

		waits, err := q.Waiting(ctx, []*models.Job{{ID: 1, FlowKeys: models.FlowKeys{"ig:1"}}})
		require.NoError(t, err)
		require.Equal(t, &models.WaitingFor{Key: "ig:1", Reason: "paused by an operator: account under review"}, waits[1])
		clock.Advance(time.Hour)
		got := claimAll(t, q, 10)
		require.Equal(t, []int64{2}, got, "an hour later the held key's jobs still wait")
		st, err := q.FlowStatus(ctx, "ig:1")
		require.NoError(t, err)
		require.True(t, st[0].Paused)
		require.Nil(t, st[0].PausedUntil)
		require.EqualValues(t, 2, st[0].Parked)

		n, err := q.ResumeFlow(ctx, "ig:1")
		require.NoError(t, err)
		require.Equal(t, 2, n)
		got = claimAll(t, q, 10)
		require.ElementsMatch(t, []int64{1, 3}, got)
	})
}

func TestQueueHeldTypeParksItsJobsUntilResumed(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		require.NoError(t, q.HoldType(ctx, "social_publish_instagram", "Meta outage"))
		ig := func(id int64) queueItem {
			return queueItem{ID: id, Priority: 5, Meta: encodeMeta("a", "social_publish_instagram", []string{"ig:1"})}
		}
		require.NoError(t, q.Enqueue(ctx, ig(1), queueItem{ID: 2, Priority: 5, Meta: encodeMeta("a", "web_scraping", nil)}, ig(3)))
		// Before any claim the API already says why.
		waits, err := q.Waiting(ctx, []*models.Job{{ID: 3, Type: "social_publish_instagram"}, {ID: 2, Type: "web_scraping"}})
		require.NoError(t, err)
		require.Equal(t, &models.WaitingFor{Key: "type:social_publish_instagram", Reason: "job type paused by an operator: Meta outage"}, waits[3])
		require.Nil(t, waits[2])
		require.Equal(t, []int64{2}, claimAll(t, q, 10), "only the other type runs")
		held, err := q.HeldTypes(ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"social_publish_instagram": "Meta outage"}, held)

		n, err := q.ResumeType(ctx, "social_publish_instagram")
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.ElementsMatch(t, []int64{1, 3}, claimAll(t, q, 10))
	})
}
