package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// stuckPublisher is a QStash whose trigger publishes hang until released.
type stuckPublisher struct {
	called  chan time.Duration
	release chan struct{}
	ended   atomic.Int64
}

func newStuckPublisher() *stuckPublisher {
	return &stuckPublisher{called: make(chan time.Duration, 16), release: make(chan struct{})}
}

func (p *stuckPublisher) PublishAt(context.Context, int64, time.Time) (string, error) {
	return "msg", nil
}

func (p *stuckPublisher) Cancel(context.Context, string) error { return nil }

func (p *stuckPublisher) Trigger(ctx context.Context, delay time.Duration) error {
	p.called <- delay
	defer p.ended.Add(1)
	select {
	case <-p.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *stuckPublisher) TriggerAt(ctx context.Context, at time.Time) error {
	return p.Trigger(ctx, time.Until(at))
}

// TestCreateDoesNotWaitForTheTriggerPublish: a create answers while the
// trigger it asked for is still being published (a slow QStash), the
// publish does happen, and wait waits for it.
func TestCreateDoesNotWaitForTheTriggerPublish(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		reg := jobs.NewRegistry()
		require.NoError(t, reg.Register("noop", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			return nil, nil
		})))
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		stuck := newStuckPublisher()
		triggers := newAsyncTrigger(stuck, log)
		engine, err := jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: log, Publisher: triggers})
		require.NoError(t, err)

		created := make(chan error, 1)
		go func() {
			_, _, err := engine.Service().Create(context.Background(), jobs.CreateRequest{UserID: "u", Type: "noop"})
			created <- err
		}()
		select {
		case err := <-created:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("the create waited for the trigger publish")
		}
		select {
		case delay := <-stuck.called:
			require.Zero(t, delay, "a leading trigger, published at once")
		case <-time.After(10 * time.Second):
			t.Fatal("no trigger was published")
		}
		require.Zero(t, stuck.ended.Load(), "the publish is still hanging")

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		triggers.wait(ctx)
		require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded, "wait gives up at its deadline")
		close(stuck.release)
		triggers.wait(context.Background())
		require.Equal(t, int64(1), stuck.ended.Load(), "wait returns once the publish has ended")
	})
}

// TestTriggersInFlightAreBounded: beyond maxTriggersInFlight hanging
// publishes, triggers are dropped rather than piling up goroutines.
func TestTriggersInFlightAreBounded(t *testing.T) {
	stuck := newStuckPublisher()
	triggers := newAsyncTrigger(stuck, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < maxTriggersInFlight+3; i++ {
		require.NoError(t, triggers.Trigger(context.Background(), time.Second))
	}
	for i := 0; i < maxTriggersInFlight; i++ {
		select {
		case <-stuck.called:
		case <-time.After(10 * time.Second):
			t.Fatalf("publish %d did not start", i+1)
		}
	}
	close(stuck.release)
	triggers.wait(context.Background())
	require.Equal(t, int64(maxTriggersInFlight), stuck.ended.Load())
	select {
	case <-stuck.called:
		t.Fatal("a trigger beyond the bound was published")
	default:
	}
	require.NoError(t, triggers.Trigger(context.Background(), 0), "room again once they ended")
	select {
	case <-stuck.called:
	case <-time.After(10 * time.Second):
		t.Fatal("no publish after the others ended")
	}
	triggers.wait(context.Background())
}
