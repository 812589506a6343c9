package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

func newRow(user, key string, parent *int64, now time.Time) *models.Job {
	j := &models.Job{UserID: user, Type: "t", Status: models.StatusPending, Payload: models.JSON(`{"a":1}`), MaxAttempts: 3,
		NextRunAt: now, CreatedAt: now, UpdatedAt: now, ParentID: parent}
	if key != "" {
		j.IdempotencyKey = &key
	}
	return j
}

// TestInsertSkipsTakenKeys: rows whose key is held are skipped, not an
// error, and the others get their ids in order; a child's key space is
// its parent's, apart from the user's own keys.
func TestInsertSkipsTakenKeys(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx, s, now := insertSetup(b)

		first := newRow("u1", "k", nil, now)
		ok, err := s.Insert(ctx, []*models.Job{first})
		require.NoError(t, err)
		require.Equal(t, []bool{true}, ok)
		require.Positive(t, first.ID)

		parent := first.ID
		rows := []*models.Job{
			newRow("u1", "k", nil, now),     // taken
			newRow("u1", "", nil, now),      // no key
			newRow("u2", "k", nil, now),     // another user's space
			newRow("u1", "k", &parent, now), // the parent's children's space
			newRow("u1", "k2", nil, now),
		}
		ok, err = s.Insert(ctx, rows)
		require.NoError(t, err)
		require.Equal(t, []bool{false, true, true, true, true}, ok)
		require.Zero(t, rows[0].ID, "a skipped row has no id")
		for i := 2; i < len(rows); i++ {
			require.Greater(t, rows[i].ID, rows[i-1].ID, "ids in order")
		}

		// The same child key again is skipped too.
		again := newRow("u1", "k", &parent, now)
		ok, err = s.Insert(ctx, []*models.Job{again, newRow("u1", "", nil, now)})
		require.NoError(t, err)
		require.Equal(t, []bool{false, true}, ok)

		found, err := s.ByIdempotencyKeys(ctx, []store.Key{
			{UserID: "u1", Key: "k"}, {UserID: "u2", Key: "k"}, {UserID: "u1", ParentID: parent, Key: "k"},
			{UserID: "u1", Key: "missing"}, {UserID: "u2", ParentID: parent, Key: "k"},
		})
		require.NoError(t, err)
		require.Len(t, found, 3)
		require.Equal(t, first.ID, found[store.Key{UserID: "u1", Key: "k"}].ID)
		require.Equal(t, rows[2].ID, found[store.Key{UserID: "u2", Key: "k"}].ID)
		child := found[store.Key{UserID: "u1", ParentID: parent, Key: "k"}]
		require.Equal(t, rows[3].ID, child.ID)
		require.JSONEq(t, `{"a":1}`, string(child.Payload), "whole rows are read")
	})
}

// TestInsertManyChunks writes more rows than one statement holds, every
// one stored with its fields.
func TestInsertManyChunks(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx, s, now := insertSetup(b)
		at := now.Add(time.Hour)
		rows := make([]*models.Job, 2500)
		for i := range rows {
			rows[i] = newRow("u1", fmt.Sprintf("k-%d", i), nil, now)
			rows[i].Priority = i % 7
			if i%2 == 0 {
				rows[i].Status, rows[i].ScheduledFor, rows[i].NextRunAt = models.StatusScheduled, &at, at
			}
		}
		ok, err := s.Insert(ctx, rows)
		require.NoError(t, err)
		for i, r := range rows {
			require.True(t, ok[i], "row %d", i)
			if i > 0 {
				require.Greater(t, r.ID, rows[i-1].ID)
			}
		}
		var stored []models.Job
		require.NoError(t, b.DB.Gorm.Order("id").Find(&stored).Error)
		require.Len(t, stored, len(rows))
		for i, got := range stored {
			require.Equal(t, rows[i].ID, got.ID)
			require.Equal(t, rows[i].Priority, got.Priority)
			require.Equal(t, rows[i].Status, got.Status)
			require.Equal(t, *rows[i].IdempotencyKey, *got.IdempotencyKey)
			require.True(t, got.NextRunAt.Equal(rows[i].NextRunAt))
			require.Equal(t, i%2 == 0, got.ScheduledFor != nil)
		}
	})
}
