package jobs_test

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

func TestIdempotencyKeyUnderConcurrency(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		const n = 12
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ids     = map[int64]bool{}
			created int
		)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				job, ok, err := x.service.Create(context.Background(), jobs.CreateRequest{UserID: "u", Type: "record", IdempotencyKey: "order-42"})
				if !assertNoErr(t, err) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ids[job.ID] = true
				if ok {
					created++
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, created, "exactly one create wins")
		require.Len(t, ids, 1, "every caller gets the same job")

		// The key is per user: another user's same key is another job.
		other, ok, err := x.service.Create(context.Background(), jobs.CreateRequest{UserID: "v", Type: "record", IdempotencyKey: "order-42"})
		require.NoError(t, err)
		require.True(t, ok)
		require.False(t, ids[other.ID])
		d, err := x.queue.Depth(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, 2, d.Pending, "a replayed create enqueues nothing")
	})
}

func assertNoErr(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

func TestCreateValidation(t *testing.T) {
	b := testenv.Embedded(t)
	x := setup(t, b)
	x.registry.MustRegister("strict", strictHandler{})
	for _, tc := range []struct {
		name string
		req  jobs.CreateRequest
		code string
	}{
		{"unknown type", jobs.CreateRequest{Type: "nope"}, "unknown_job_type"},
		{"payload array", jobs.CreateRequest{Payload: json.RawMessage(`[1]`)}, "invalid_payload"},
		{"payload null", jobs.CreateRequest{Payload: json.RawMessage(`null`)}, "invalid_payload"},
		{"payload too large", jobs.CreateRequest{Payload: json.RawMessage(`{"a":"` + string(make([]byte, jobs.DefaultMaxPayloadBytes)) + `"}`)}, "payload_too_large"},
		{"payload NUL escape", jobs.CreateRequest{Payload: json.RawMessage(`{"a":"\u0000"}`)}, "invalid_payload"},
		{"priority low", jobs.CreateRequest{Priority: -1}, "invalid_priority"},
		{"priority high", jobs.CreateRequest{Priority: 1000000}, "invalid_priority"},
		{"attempts high", jobs.CreateRequest{MaxAttempts: 26}, "invalid_max_attempts"},
		{"attempts negative", jobs.CreateRequest{MaxAttempts: -1}, "invalid_max_attempts"},
		{"key too long", jobs.CreateRequest{IdempotencyKey: string(make([]byte, 256))}, "invalid_idempotency_key"},
		{"type validator", jobs.CreateRequest{Type: "strict", Payload: json.RawMessage(`{}`)}, "invalid_payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.UserID = "u"
			if tc.req.Type == "" {
				tc.req.Type = "record"
			}
			_, _, err := x.service.Create(context.Background(), tc.req)
			var ve *jobs.ValidationError
			require.True(t, errors.As(err, &ve), "got %v", err)
			require.Equal(t, tc.code, ve.Code)
		})
	}
	var n int64
	require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&n).Error)
	require.Zero(t, n, "a refused create writes nothing")
}

type strictHandler struct{}

func (strictHandler) Handle(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }
func (strictHandler) ValidatePayload(json.RawMessage) error {
	return &jobs.ValidationError{Code: "invalid_payload", Message: "payload.url is required", Fields: []jobs.FieldError{{Field: "payload.url", Message: "required"}}}
}

func TestCancel(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		job := x.create(t, jobs.CreateRequest{})
		at := x.clock.Now().Add(time.Hour)
		sched := x.create(t, jobs.CreateRequest{ScheduledFor: &at})

		_, err := x.service.Cancel(ctx, "someone-else", job.ID)
		require.ErrorIs(t, err, jobs.ErrNotFound)
		got, err := x.service.Cancel(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusCancelled, got.Status)
		_, err = x.service.Cancel(ctx, "user-1", job.ID)
		require.ErrorIs(t, err, jobs.ErrNotCancellable)
		_, err = x.service.Cancel(ctx, "user-1", sched.ID)
		require.NoError(t, err)

		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{}, d, "a cancelled job leaves the queue")
		x.clock.Advance(2 * time.Hour)
		sum, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Zero(t, sum.Claimed, "cancelled jobs never run")
	})
}
