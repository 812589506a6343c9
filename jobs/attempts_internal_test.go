package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// lockedLog is a log sink safe for concurrent writes.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func insertJob(t *testing.T, b testenv.Backend, user string, status models.Status) models.Job {
	t.Helper()
	now := time.Now().UTC()
	job := models.Job{UserID: user, Type: "record", Status: status, Payload: models.JSON(`{}`),
		MaxAttempts: 3, NextRunAt: now, CreatedAt: now, UpdatedAt: now}
	require.NoError(t, b.DB.Gorm.Create(&job).Error)
	return job
}

func attemptsOf(t *testing.T, b testenv.Backend, jobID int64) []models.JobAttempt {
	t.Helper()
	var rows []models.JobAttempt
	require.NoError(t, b.DB.Gorm.Where("job_id = ?", jobID).Order("id").Find(&rows).Error)
	return rows
}

func TestRecordAttemptWritesRows(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		logs := &lockedLog{}
		log := slog.New(slog.NewTextHandler(logs, nil))
		job := insertJob(t, b, "u1", models.StatusProcessing)
		start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
		long := strings.Repeat("é", maxErrorLength) // 2 bytes a rune: cut mid-rune

		recordAttempt(ctx, b.DB.Gorm, log, attemptRecord{JobID: job.ID, Attempt: 1, StartedAt: start,
			FinishedAt: start.Add(1500 * time.Millisecond), Outcome: AttemptRetried, Error: "503 upstream"})
		recordAttempt(ctx, b.DB.Gorm, log, attemptRecord{JobID: job.ID, Attempt: 2, StartedAt: start.Add(time.Minute),
			FinishedAt: start.Add(2 * time.Minute), Outcome: AttemptFailed, Error: long})
		// A lost attempt whose start is unknown and whose end is now.
		before := time.Now().UTC().Add(-time.Second)
		recordAttempt(ctx, b.DB.Gorm, log, attemptRecord{JobID: job.ID, Attempt: 3, Outcome: AttemptLost,
			Error: "lease expired: worker lost"})
		require.Empty(t, logs.String(), "no warning on success")

		rows := attemptsOf(t, b, job.ID)
		require.Len(t, rows, 3)
		require.Equal(t, 1, rows[0].Attempt)
		require.Equal(t, "retried", rows[0].Outcome)
		require.Equal(t, "503 upstream", rows[0].Error)
		require.NotNil(t, rows[0].StartedAt)
		require.True(t, rows[0].StartedAt.Equal(start), "started %v, want %v", rows[0].StartedAt, start)
		require.True(t, rows[0].FinishedAt.Equal(start.Add(1500*time.Millisecond)))
		require.False(t, rows[0].CreatedAt.IsZero())

		require.Equal(t, "failed", rows[1].Outcome)
		require.Equal(t, truncate(long), rows[1].Error, "truncated like the job's error")
		require.Less(t, len(rows[1].Error), len(long))
		require.True(t, strings.HasSuffix(rows[1].Error, "…"))

		require.Equal(t, "lost", rows[2].Outcome)
		require.Nil(t, rows[2].StartedAt, "an unknown start is stored as NULL")
		require.True(t, rows[2].FinishedAt.After(before), "a zero end is now")

		// Deleting the job deletes its history.
		require.NoError(t, b.DB.Gorm.Delete(&models.Job{}, job.ID).Error)
		require.Empty(t, attemptsOf(t, b, job.ID))
	})
}

func TestRecordAttemptFailureOnlyWarns(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		logs := &lockedLog{}
		log := slog.New(slog.NewTextHandler(logs, nil))
		job := insertJob(t, b, "u1", models.StatusProcessing)
		now := time.Now()
		rec := attemptRecord{JobID: job.ID, Attempt: 1, StartedAt: now, FinishedAt: now, Outcome: AttemptCompleted}

		// A cancelled context: nothing written, a warning logged.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		recordAttempt(ctx, b.DB.Gorm, log, rec)
		require.Contains(t, logs.String(), "attempt not recorded")
		require.Contains(t, logs.String(), "level=WARN")

		// No such job (the foreign key), an unknown outcome, no database,
		// no logger: never a panic, never a row.
		missing := rec
		missing.JobID = job.ID + 1000
		recordAttempt(context.Background(), b.DB.Gorm, log, missing)
		bad := rec
		bad.Outcome = "exploded"
		recordAttempt(context.Background(), b.DB.Gorm, log, bad)
		require.NotPanics(t, func() { recordAttempt(context.Background(), nil, nil, rec) })
		require.Empty(t, attemptsOf(t, b, job.ID))
		var n int64
		require.NoError(t, b.DB.Gorm.Model(&models.JobAttempt{}).Count(&n).Error)
		require.Zero(t, n)
		require.Equal(t, 3, strings.Count(logs.String(), "attempt not recorded"), logs.String())

		// The same record with a live context is kept.
		recordAttempt(context.Background(), b.DB.Gorm, log, rec)
		require.Len(t, attemptsOf(t, b, job.ID), 1)
	})
}

func TestAttemptsOwnerOnlyInInsertionOrder(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: newRedisQueue(b.Redis, b.Prefix, nil),
			Registry: NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
		job := insertJob(t, b, "u1", models.StatusFailed)
		other := insertJob(t, b, "u2", models.StatusFailed)
		quiet := slog.New(slog.DiscardHandler)
		now := time.Now()

		got, err := svc.Attempts(ctx, "u1", job.ID)
		require.NoError(t, err)
		require.NotNil(t, got, "no history is an empty list")
		require.Empty(t, got)

		// Two attempts, then a retry restarts the numbering at 1.
		for i, a := range []struct {
			n       int
			outcome AttemptOutcome
		}{{1, AttemptRetried}, {2, AttemptFailed}, {1, AttemptCompleted}} {
			at := now.Add(time.Duration(i) * time.Minute)
			recordAttempt(ctx, b.DB.Gorm, quiet, attemptRecord{JobID: job.ID, Attempt: a.n, StartedAt: at,
				FinishedAt: at.Add(time.Second), Outcome: a.outcome})
		}
		recordAttempt(ctx, b.DB.Gorm, quiet, attemptRecord{JobID: other.ID, Attempt: 1, StartedAt: now,
			FinishedAt: now, Outcome: AttemptFailed, Error: "not yours"})

		got, err = svc.Attempts(ctx, "u1", job.ID)
		require.NoError(t, err)
		require.Len(t, got, 3)
		var seq []string
		for _, a := range got {
			require.Equal(t, job.ID, a.JobID)
			seq = append(seq, string(rune('0'+a.Attempt))+":"+a.Outcome)
		}
		require.Equal(t, []string{"1:retried", "2:failed", "1:completed"}, seq, "by insertion, not by attempt")

		_, err = svc.Attempts(ctx, "u2", job.ID)
		require.ErrorIs(t, err, ErrNotFound, "another user's job, with history")
		_, err = svc.Attempts(ctx, "u1", other.ID)
		require.ErrorIs(t, err, ErrNotFound)
		_, err = svc.Attempts(ctx, "u1", other.ID+1000)
		require.ErrorIs(t, err, ErrNotFound, "no such job")
		own, err := svc.Attempts(ctx, "u2", other.ID)
		require.NoError(t, err)
		require.Len(t, own, 1)
		require.Equal(t, "not yours", own[0].Error)
	})
}
