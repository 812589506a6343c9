package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// countJobs returns how many rows the jobs table holds.
func countJobs(t *testing.T, b testenv.Backend) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&n).Error)
	return n
}

// insertSetup returns what an Insert test starts from: a context, a
// store on b and a fixed time.
func insertSetup(b testenv.Backend) (context.Context, *store.Store, time.Time) {
	return context.Background(), store.New(b.DB.Gorm), time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
}

// TestInsertBatchColumns: every column a batch carries is stored as
// given, and the others take their defaults (COPY on Postgres).
func TestInsertBatchColumns(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx, s, now := insertSetup(b)
		now = now.Add(123456 * time.Microsecond)
		at := now.Add(90 * time.Minute)
		parent := newRow("u1", "", nil, now)
		_, err := s.Insert(ctx, []*models.Job{parent})
		require.NoError(t, err)

		plain := newRow("u1", "", nil, now)
		plain.Priority, plain.MaxAttempts, plain.Payload = 42, 7, models.JSON(`{"n":[1,2],"s":"x"}`)
		scheduled := newRow("u2", "", nil, now)
		scheduled.Status, scheduled.ScheduledFor, scheduled.NextRunAt, scheduled.Type = models.StatusScheduled, &at, at, "other"
		expires := at.Add(72 * time.Hour)
		scheduled.ExpiresAt = &expires
		child := newRow("u1", "c1", &parent.ID, now)
		rows := []*models.Job{plain, scheduled, child}
		ok, err := s.Insert(ctx, rows)
		require.NoError(t, err)
		require.Equal(t, []bool{true, true, true}, ok)

		for _, want := range rows {
			var got models.Job
			require.NoError(t, b.DB.Gorm.First(&got, want.ID).Error)
			require.Equal(t, want.UserID, got.UserID)
			require.Equal(t, want.Type, got.Type)
			require.Equal(t, want.Status, got.Status)
			require.Equal(t, want.Priority, got.Priority)
			require.JSONEq(t, string(want.Payload), string(got.Payload))
			require.Equal(t, want.MaxAttempts, got.MaxAttempts)
			require.True(t, want.NextRunAt.Equal(got.NextRunAt), "next_run_at %v, want %v", got.NextRunAt, want.NextRunAt)
			require.True(t, want.CreatedAt.Equal(got.CreatedAt))
			require.True(t, want.UpdatedAt.Equal(got.UpdatedAt))
			require.Equal(t, want.ScheduledFor != nil, got.ScheduledFor != nil)
			if want.ScheduledFor != nil {
				require.True(t, want.ScheduledFor.Equal(*got.ScheduledFor))
			}
			require.Equal(t, want.IdempotencyKey, got.IdempotencyKey)
			require.Equal(t, want.ParentID, got.ParentID)
			require.Equal(t, want.ExpiresAt != nil, got.ExpiresAt != nil)
			if want.ExpiresAt != nil {
				require.True(t, want.ExpiresAt.Equal(*got.ExpiresAt))
			}
			// Defaults.
			require.Zero(t, got.LostAttempts)
			require.Zero(t, got.Attempts)
			require.Empty(t, got.Error)
			require.Nil(t, got.Result)
			require.Nil(t, got.Checkpoint)
			require.Nil(t, got.StartedAt)
			require.Nil(t, got.CompletedAt)
			require.Nil(t, got.LeaseExpiresAt)
			require.Nil(t, got.LeaseID)
			require.Nil(t, got.QStashMessageID)
		}
		require.Less(t, parent.ID, plain.ID)
		require.Less(t, plain.ID, scheduled.ID, "ids in request order")
		require.Less(t, scheduled.ID, child.ID)
	})
}

// TestInsertMixedBatch: rows with and without keys in one batch, the
// keys out of order, are all written with ids in request order; a taken
// key is skipped while the rest of the batch, the unkeyed rows among it,
// is written once.
func TestInsertMixedBatch(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx, s, now := insertSetup(b)
		rows := []*models.Job{
			newRow("u1", "z", nil, now), newRow("u1", "", nil, now), newRow("u1", "a", nil, now),
			newRow("u2", "", nil, now), newRow("u1", "m", nil, now),
		}
		ok, err := s.Insert(ctx, rows)
		require.NoError(t, err)
		require.Equal(t, []bool{true, true, true, true, true}, ok)
		for i := 1; i < len(rows); i++ {
			require.Greater(t, rows[i].ID, rows[i-1].ID, "ids in request order")
		}
		require.EqualValues(t, 5, countJobs(t, b))

		// "m" is taken now: skipped; the others are written, each once.
		again := []*models.Job{
			newRow("u1", "", nil, now), newRow("u1", "m", nil, now), newRow("u1", "b", nil, now), newRow("u1", "", nil, now),
		}
		expires := now.Add(time.Hour)
		again[2].ExpiresAt = &expires // written by the INSERT … ON CONFLICT of that path
		ok, err = s.Insert(ctx, again)
		require.NoError(t, err)
		require.Equal(t, []bool{true, false, true, true}, ok)
		var keyed models.Job
		require.NoError(t, b.DB.Gorm.First(&keyed, again[2].ID).Error)
		require.NotNil(t, keyed.ExpiresAt)
		require.True(t, expires.Equal(*keyed.ExpiresAt))
		require.Zero(t, again[1].ID)
		require.Greater(t, again[2].ID, again[0].ID)
		require.Greater(t, again[3].ID, again[2].ID)
		require.EqualValues(t, 8, countJobs(t, b))
		found, err := s.ByIdempotencyKeys(ctx, []store.Key{{UserID: "u1", Key: "m"}})
		require.NoError(t, err)
		require.Equal(t, rows[4].ID, found[store.Key{UserID: "u1", Key: "m"}].ID, "the earlier job keeps its key")

		// Only taken keys: nothing written, no error.
		ok, err = s.Insert(ctx, []*models.Job{newRow("u1", "a", nil, now), newRow("u1", "z", nil, now)})
		require.NoError(t, err)
		require.Equal(t, []bool{false, false}, ok)
		require.EqualValues(t, 8, countJobs(t, b))
	})
}

// TestInsertFailureWritesNothing: a row that cannot be written (its
// parent does not exist) fails the whole batch, whichever path it takes:
// among rows without keys, among keyed ones, or after a taken key sent
// the batch to the INSERT … ON CONFLICT path.
func TestInsertFailureWritesNothing(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx, s, now := insertSetup(b)
		taken := newRow("u1", "taken", nil, now)
		_, err := s.Insert(ctx, []*models.Job{taken})
		require.NoError(t, err)
		missing := int64(1 << 40)
		for name, rows := range map[string][]*models.Job{
			"unkeyed": {newRow("u1", "", nil, now), newRow("u1", "", &missing, now), newRow("u1", "k1", nil, now)},
			"keyed":   {newRow("u1", "", nil, now), newRow("u1", "k1", nil, now), newRow("u1", "k2", &missing, now)},
			"after a taken key": {newRow("u1", "", nil, now), newRow("u1", "taken", nil, now),
				newRow("u1", "k2", &missing, now), newRow("u1", "k3", nil, now)},
		} {
			ok, err := s.Insert(ctx, rows)
			require.Error(t, err, name)
			require.Nil(t, ok, name)
			for _, r := range rows {
				require.Zero(t, r.ID, "%s: no id after a failure", name)
			}
			require.EqualValues(t, 1, countJobs(t, b), "%s: nothing written", name)
		}
		// The keys of the failed batches are still free.
		ok, err := s.Insert(ctx, []*models.Job{newRow("u1", "k1", nil, now), newRow("u1", "k2", nil, now)})
		require.NoError(t, err)
		require.Equal(t, []bool{true, true}, ok)
	})
}

// TestInsertConcurrentKeyedBatches: batches racing for the same keys, each
// listing them in its own order beside rows of its own, all succeed (no
// deadlock, no error); every key is written exactly once, by one batch,
// and every row without a key or with a key of its own is written.
func TestInsertConcurrentKeyedBatches(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx, s, now := insertSetup(b)
		const batches, shared, own = 6, 40, 10
		rows := make([][]*models.Job, batches)
		for i := range rows {
			for k := range shared {
				rows[i] = append(rows[i], newRow("u1", fmt.Sprintf("shared-%02d", k), nil, now))
			}
			for k := range own {
				rows[i] = append(rows[i], newRow("u1", "", nil, now), newRow("u1", fmt.Sprintf("own-%d-%d", i, k), nil, now))
			}
			rand.Shuffle(len(rows[i]), func(a, c int) { rows[i][a], rows[i][c] = rows[i][c], rows[i][a] })
		}
		oks := make([][]bool, batches)
		errs := make([]error, batches)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range batches {
			wg.Go(func() {
				<-start
				oks[i], errs[i] = s.Insert(ctx, rows[i])
			})
		}
		close(start)
		wg.Wait()

		winners := map[string]int64{}
		for i := range batches {
			require.NoError(t, errs[i], "batch %d", i)
			for n, r := range rows[i] {
				key := ""
				if r.IdempotencyKey != nil {
					key = *r.IdempotencyKey
				}
				switch {
				case !oks[i][n]:
					require.Zero(t, r.ID)
					require.Regexp(t, "^shared-", key, "only a shared key can be lost")
				case len(key) > 0 && key[0] == 's':
					require.NotContains(t, winners, key, "key %s written twice", key)
					winners[key] = r.ID
				}
			}
		}
		require.Len(t, winners, shared, "every shared key written once")
		require.EqualValues(t, shared+batches*own*2, countJobs(t, b))
		keys := make([]store.Key, 0, shared)
		for k := range winners {
			keys = append(keys, store.Key{UserID: "u1", Key: k})
		}
		found, err := s.ByIdempotencyKeys(ctx, keys)
		require.NoError(t, err)
		for k, id := range winners {
			require.Equal(t, id, found[store.Key{UserID: "u1", Key: k}].ID, "key %s", k)
		}
	})
}

// TestInsertInTransaction: a store on a GORM transaction writes batches
// too (with INSERT on Postgres, where COPY needs a connection of its own),
// and they roll back with the transaction.
func TestInsertInTransaction(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx, _, now := insertSetup(b)
		tx := b.DB.Gorm.Begin()
		require.NoError(t, tx.Error)
		s := store.New(tx)
		rows := []*models.Job{newRow("u1", "", nil, now), newRow("u1", "k", nil, now), newRow("u1", "k2", nil, now)}
		ok, err := s.Insert(ctx, rows)
		require.NoError(t, err)
		require.Equal(t, []bool{true, true, true}, ok)
		ok, err = s.Insert(ctx, []*models.Job{newRow("u1", "k", nil, now), newRow("u1", "", nil, now)})
		require.NoError(t, err)
		require.Equal(t, []bool{false, true}, ok)
		var n int64
		require.NoError(t, tx.Model(&models.Job{}).Count(&n).Error)
		require.EqualValues(t, 4, n)
		require.NoError(t, tx.Rollback().Error)
		require.Zero(t, countJobs(t, b))
	})
}
