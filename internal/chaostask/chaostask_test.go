package chaostask_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/chaostask"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// run runs f on SQLite and, when configured, on the real Postgres.
func run(t *testing.T, f func(t *testing.T, db *database.DB)) {
	t.Run("sqlite", func(t *testing.T) { f(t, testenv.SQLite(t)) })
	if testenv.RealConfigured() {
		t.Run("postgres", func(t *testing.T) { f(t, testenv.Postgres(t)) })
	}
}

func job(id int64, attempt int, payload string) *models.Job {
	return &models.Job{ID: id, Type: chaostask.Type, Status: models.StatusProcessing, Attempts: attempt, MaxAttempts: 3, Payload: models.JSON(payload)}
}

func TestRecordsEveryCall(t *testing.T) {
	run(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		h := chaostask.New(db.Gorm) // the table does not exist yet
		before := time.Now().UTC()
		res, err := h.Handle(ctx, job(7, 1, `{"sleepMs":30}`))
		require.NoError(t, err)
		require.JSONEq(t, `{"ok":true}`, string(res))
		res, err = h.Handle(ctx, job(7, 2, `{}`))
		require.NoError(t, err)
		require.JSONEq(t, `{"ok":true}`, string(res))
		after := time.Now().UTC()

		calls, err := chaostask.Calls(ctx, db.Gorm)
		require.NoError(t, err)
		require.Len(t, calls, 2)
		first, second := calls[0], calls[1]
		require.EqualValues(t, 7, first.JobID)
		require.Equal(t, 1, first.Attempt)
		require.Equal(t, 2, second.Attempt)
		require.Equal(t, os.Getpid(), first.PID)
		require.NotNil(t, first.FinishedAt)
		require.NotNil(t, second.FinishedAt)
		require.False(t, first.StartedAt.Before(before.Truncate(time.Microsecond)), "started_at %s before the call (%s)", first.StartedAt, before)
		require.GreaterOrEqual(t, first.FinishedAt.Sub(first.StartedAt), 30*time.Millisecond, "the handler slept sleepMs")
		require.False(t, second.StartedAt.Before(*first.FinishedAt))
		require.False(t, second.FinishedAt.After(after.Add(time.Microsecond)))
		// One clock orders the calls: each start tick before its end, the
		// second call's start after the first's end.
		require.NotNil(t, first.EndTick)
		require.NotNil(t, second.EndTick)
		require.Less(t, first.StartTick, *first.EndTick)
		require.Less(t, *first.EndTick, second.StartTick)
		require.Less(t, second.StartTick, *second.EndTick)
		mark, err := chaostask.Tick(ctx, db.Gorm)
		require.NoError(t, err)
		require.Greater(t, mark, *second.EndTick)
		require.Empty(t, first.FlowKey)
	})
}

func TestRecordsFlowKey(t *testing.T) {
	run(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		h := chaostask.New(db.Gorm)
		_, err := h.Handle(ctx, job(3, 1, `{"sleepMs":1,"flowKey":"chaos:acct-1"}`))
		require.NoError(t, err)
		calls, err := chaostask.Calls(ctx, db.Gorm)
		require.NoError(t, err)
		require.Len(t, calls, 1)
		require.Equal(t, "chaos:acct-1", calls[0].FlowKey)
	})
}

func TestFlowKeys(t *testing.T) {
	h := chaostask.New(nil)
	keys, err := h.FlowKeys(json.RawMessage(`{"sleepMs":5,"flowKey":"chaos:acct-1"}`))
	require.NoError(t, err)
	require.Equal(t, []string{"chaos:acct-1"}, keys)
	keys, err = h.FlowKeys(json.RawMessage(`{"sleepMs":5}`))
	require.NoError(t, err)
	require.Empty(t, keys, "no flowKey, no key")
	_, err = h.FlowKeys(json.RawMessage(`{"flowKey":"a b"}`))
	var ve *jobs.ValidationError
	require.ErrorAs(t, err, &ve)
}

func TestCancelledCallStaysOpen(t *testing.T) {
	run(t, func(t *testing.T, db *database.DB) {
		h := chaostask.New(db.Gorm)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := h.Handle(ctx, job(9, 1, `{"sleepMs":10000}`))
			done <- err
		}()
		testenv.WaitFor(t, 5*time.Second, "the call to be recorded", func() bool {
			calls, err := chaostask.Calls(context.Background(), db.Gorm)
			return err == nil && len(calls) == 1
		})
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(5 * time.Second):
			t.Fatal("the handler ignored its context")
		}
		require.Less(t, time.Since(start), 2*time.Second)
		calls, err := chaostask.Calls(context.Background(), db.Gorm)
		require.NoError(t, err)
		require.Len(t, calls, 1)
		require.Nil(t, calls[0].FinishedAt, "an interrupted call keeps finished_at NULL")
	})
}

func TestTimeoutReturnsDeadlineExceeded(t *testing.T) {
	db := testenv.SQLite(t)
	h := chaostask.New(db.Gorm)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.Handle(ctx, job(1, 1, `{"sleepMs":5000}`))
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestConcurrentCallsShareOneTable(t *testing.T) {
	run(t, func(t *testing.T, db *database.DB) {
		// Two handlers, as two processes would have, creating the table at once.
		hs := []*chaostask.Handler{chaostask.New(db.Gorm), chaostask.New(db.Gorm)}
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := hs[i%2].Handle(context.Background(), job(int64(i+1), 1, `{"sleepMs":5}`))
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		calls, err := chaostask.Calls(context.Background(), db.Gorm)
		require.NoError(t, err)
		require.Len(t, calls, n)
		seen := map[int64]bool{}
		for _, c := range calls {
			require.False(t, seen[c.JobID])
			seen[c.JobID] = true
			require.NotNil(t, c.FinishedAt)
		}
	})
}

func TestEnsureTableIsIdempotent(t *testing.T) {
	run(t, func(t *testing.T, db *database.DB) {
		ctx := context.Background()
		require.NoError(t, chaostask.EnsureTable(ctx, db.Gorm))
		require.NoError(t, chaostask.EnsureTable(ctx, db.Gorm))
		calls, err := chaostask.Calls(ctx, db.Gorm)
		require.NoError(t, err)
		require.Empty(t, calls)
	})
}

func TestPayloadValidation(t *testing.T) {
	h := chaostask.New(nil) // validation never touches the database
	for _, ok := range []string{`{}`, `{"sleepMs":0}`, `{"sleepMs":10000}`, `{"sleepMs":15}`, `{"flowKey":"chaos:a"}`, `{"sleepMs":1,"flowKey":"x"}`} {
		require.NoError(t, h.ValidatePayload(json.RawMessage(ok)), ok)
	}
	for _, tc := range []struct{ payload, field string }{
		{`[]`, ""},
		{`null`, ""},
		{`"x"`, ""},
		{`{"sleepMs":-1}`, "sleepMs"},
		{`{"sleepMs":10001}`, "sleepMs"},
		{`{"sleepMs":1.5}`, "sleepMs"},
		{`{"sleepMs":"10"}`, "sleepMs"},
		{`{"sleepMs":null}`, "sleepMs"},
		{`{"sleep":10}`, "sleep"},
		{`{"flowKey":""}`, "flowKey"},
		{`{"flowKey":"chaos: a"}`, "flowKey"},
		{`{"flowKey":"chaos:\ta"}`, "flowKey"},
		{`{"flowKey":7}`, "flowKey"},
		{`{"flowKey":null}`, "flowKey"},
		{`{"flowKey":"` + strings.Repeat("k", chaostask.MaxFlowKeyLength+1) + `"}`, "flowKey"},
	} {
		err := h.ValidatePayload(json.RawMessage(tc.payload))
		var ve *jobs.ValidationError
		require.True(t, errors.As(err, &ve), "%s: %v", tc.payload, err)
		require.Equal(t, "invalid_payload", ve.Code, tc.payload)
		if tc.field != "" {
			require.Len(t, ve.Fields, 1, tc.payload)
			require.Equal(t, tc.field, ve.Fields[0].Field, tc.payload)
		}
	}
}

func TestBadPayloadFailsForGood(t *testing.T) {
	h := chaostask.New(nil)
	_, err := h.Handle(context.Background(), job(1, 1, `{"sleepMs":-5}`))
	require.Error(t, err)
	require.True(t, jobs.IsPermanent(err))
}

func TestRunsInAWorker(t *testing.T) {
	// The handler in a real registry and drain, as serve runs it.
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		reg := jobs.NewRegistry()
		reg.MustRegister(chaostask.Type, chaostask.New(b.DB.Gorm))
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: quiet})
		svc := eng.Service()
		_, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u", Type: chaostask.Type, Payload: json.RawMessage(`{"sleepMs":-1}`)})
		var ve *jobs.ValidationError
		require.ErrorAs(t, err, &ve, "a bad payload is refused at create")
		for i := 0; i < 5; i++ {
			_, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u", Type: chaostask.Type, Payload: json.RawMessage(`{"sleepMs":5}`)})
			require.NoError(t, err)
		}
		sum, err := eng.Worker().Drain(ctx, 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, 5, sum.Completed)
		calls, err := chaostask.Calls(ctx, b.DB.Gorm)
		require.NoError(t, err)
		require.Len(t, calls, 5)
		var done int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("status = ?", models.StatusCompleted).Count(&done).Error)
		require.EqualValues(t, 5, done)
	})
}
