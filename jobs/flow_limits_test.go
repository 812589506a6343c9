package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// accountJobs is a job type limited by one account, "ig:<account>" from
// its payload, whose handler a test scripts; it records the most of its
// jobs that ran at once per account, and every call.
type accountJobs struct {
	mu      sync.Mutex
	running map[string]int
	most    map[string]int
	calls   map[int64]int
	order   []int64
	do      func(ctx context.Context, job *models.Job, account string, call int) (json.RawMessage, error)
}

func newAccountJobs() *accountJobs {
	return &accountJobs{running: map[string]int{}, most: map[string]int{}, calls: map[int64]int{}}
}

func accountOf(payload json.RawMessage) (string, error) {
	var p struct {
		Account string `json:"account"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Account == "" {
		return "", errors.New("account is required")
	}
	return p.Account, nil
}

func (a *accountJobs) FlowKeys(payload json.RawMessage) ([]string, error) {
	acct, err := accountOf(payload)
	if err != nil {
		return nil, err
	}
	return []string{"ig:" + acct}, nil
}

func (a *accountJobs) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	acct, err := accountOf(json.RawMessage(job.Payload))
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	a.mu.Lock()
	a.running[acct]++
	a.most[acct] = max(a.most[acct], a.running[acct])
	a.calls[job.ID]++
	call := a.calls[job.ID]
	a.order = append(a.order, job.ID)
	do := a.do
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running[acct]--
		a.mu.Unlock()
	}()
	if do != nil {
		return do(ctx, job, acct, call)
	}
	return json.RawMessage(`{"ok":true}`), nil
}

func (a *accountJobs) callsOf(id int64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[id]
}

func (a *accountJobs) mostAtOnce(acct string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.most[acct]
}

func createOn(t *testing.T, x *bundle, user, acct string) *models.Job {
	t.Helper()
	return x.create(t, jobs.CreateRequest{UserID: user, Type: "publish", Payload: json.RawMessage(`{"account":"` + acct + `"}`)})
}

// TestPublishesToOneAccountRunOneAtATimeAcrossServers creates 50 jobs on
// one account at once and drains them from two engines (two servers on
// one database and one Redis), ten slots each: never two at once.
func TestPublishesToOneAccountRunOneAtATimeAcrossServers(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		pub := newAccountJobs()
		pub.do = func(ctx context.Context, _ *models.Job, _ string, _ int) (json.RawMessage, error) {
			// Long enough for the other server's claims to meet it.
			select {
			case <-time.After(3 * time.Millisecond):
			case <-ctx.Done():
			}
			return json.RawMessage(`{"ok":true}`), nil
		}
		x.registry.MustRegister("publish", pub)
		limits := []jobs.FlowLimit{{Prefix: "ig:", Concurrency: 1}}
		servers := []*jobs.Worker{
			x.worker(jobs.Config{Concurrency: 10, FlowLimits: limits}),
			x.worker(jobs.Config{Concurrency: 10, FlowLimits: limits}),
		}
		const n = 50
		reqs := make([]jobs.CreateRequest, n)
		for i := range reqs {
			reqs[i] = jobs.CreateRequest{UserID: "user-1", Type: "publish", Payload: json.RawMessage(`{"account":"17841400000000001"}`)}
		}
		_, err := x.service.CreateMany(context.Background(), reqs)
		require.NoError(t, err)

		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var drainErr atomic.Value
		for _, w := range servers {
			wg.Go(func() {
				for ctx.Err() == nil && x.countStatus(t, models.StatusCompleted) < n {
					if _, err := w.Drain(ctx, 30*time.Second); err != nil && ctx.Err() == nil {
						drainErr.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		require.Nil(t, drainErr.Load())
		require.EqualValues(t, n, x.countStatus(t, models.StatusCompleted))
		require.Equal(t, 1, pub.mostAtOnce("17841400000000001"), "one publish at a time on the account")
	})
}

// TestAPausedAccountWaitsWithoutAttemptsWhileOthersRun pauses one of three
// accounts for two minutes (its provider said access returns then): its
// jobs wait, without running and without spending attempts, with the wait
// on the job; the other accounts' jobs run at once; after the window the
// paused account's jobs run.
func TestAPausedAccountWaitsWithoutAttemptsWhileOthersRun(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		pub := newAccountJobs()
		throttled := atomic.Bool{}
		throttled.Store(true)
		pub.do = func(_ context.Context, _ *models.Job, acct string, _ int) (json.RawMessage, error) {
			if acct == "1" && throttled.Load() {
				return nil, jobs.PauseFlow(errors.New("graph: (#80002) too many calls to this Instagram account"), "ig:1", 2*time.Minute,
					"business use case usage 100% (call_count), access returns in ~2 min")
			}
			return json.RawMessage(`{"ok":true}`), nil
		}
		x.registry.MustRegister("publish", pub)
		w := x.worker(jobs.Config{Concurrency: 1})
		var first, second []*models.Job
		for _, acct := range []string{"1", "2", "3"} {
			first = append(first, createOn(t, x, "user-"+acct, acct))
		}
		for _, acct := range []string{"1", "2", "3"} {
			second = append(second, createOn(t, x, "user-"+acct, acct))
		}
		ctx := context.Background()
		_, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)

		for _, j := range append(first[1:], second[1:]...) {
			require.Equal(t, models.StatusCompleted, x.reload(t, j.ID).Status, "job %d of an account that is not paused", j.ID)
		}
		require.Equal(t, 1, pub.callsOf(first[0].ID), "the job that met the limit ran once")
		require.Equal(t, 0, pub.callsOf(second[0].ID), "the next job of the paused account did not run")
		until := t0.Add(2 * time.Minute)
		for _, j := range []*models.Job{first[0], second[0]} {
			got, err := x.service.Get(ctx, "user-1", j.ID)
			require.NoError(t, err)
			require.Equal(t, models.StatusPending, got.Status)
			require.Zero(t, got.Attempts, "waiting spends no attempt")
			require.NotNil(t, got.WaitingFor, "job %d shows what it waits for", j.ID)
			require.Equal(t, "ig:1", got.WaitingFor.Key)
			require.Contains(t, got.WaitingFor.Reason, "business use case usage 100%")
			require.WithinDuration(t, until, *got.WaitingFor.Until, time.Second)
		}

		// A minute later the account is still paused.
		x.clock.Advance(time.Minute)
		_, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 0, pub.callsOf(second[0].ID))

		// After the window both run, on their first counted attempt.
		throttled.Store(false)
		x.clock.Advance(time.Minute + 2*time.Second)
		_, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		for _, j := range []*models.Job{first[0], second[0]} {
			got := x.reload(t, j.ID)
			require.Equal(t, models.StatusCompleted, got.Status, "job %d after the pause", j.ID)
			require.Equal(t, 1, got.Attempts, "the pause burned no attempt")
		}
		got, err := x.service.Get(ctx, "user-1", second[0].ID)
		require.NoError(t, err)
		require.Nil(t, got.WaitingFor, "a finished job waits for nothing")
	})
}

// TestAnotherUsersJobStartsWithinTwoClaimBatches: user A creates 5,000
// jobs, then user B one, at the same priority: B's job starts within the
// first two claim batches (20 starts at ten slots), not after A's burst.
func TestAnotherUsersJobStartsWithinTwoClaimBatches(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		ctx := context.Background()
		for range 5 {
			reqs := make([]jobs.CreateRequest, jobs.MaxBatchSize)
			for i := range reqs {
				reqs[i] = jobs.CreateRequest{UserID: "user-a", Type: "record"}
			}
			_, err := x.service.CreateMany(ctx, reqs)
			require.NoError(t, err)
		}
		bJob := x.create(t, jobs.CreateRequest{UserID: "user-b", Type: "record"})
		w := x.worker(jobs.Config{Concurrency: 10})
		// Run the drain only until B's job started.
		dctx, cancel := context.WithCancel(ctx)
		defer cancel()
		x.rec.script = func(job *models.Job, _ int) (json.RawMessage, error) {
			if job.ID == bJob.ID {
				cancel()
			}
			return json.RawMessage(`{}`), nil
		}
		_, _ = w.Drain(dctx, time.Minute)
		_, order, _ := x.rec.snapshot()
		pos := -1
		for i, id := range order {
			if id == bJob.ID {
				pos = i
				break
			}
		}
		require.GreaterOrEqual(t, pos, 0, "B's job started")
		t.Logf("B's job was start %d of %d", pos+1, len(order))
		require.Less(t, pos, 20, "B's job starts within the first two claim batches of ten")
	})
}

// TestFlowKeysAreStoredWithTheJob: the keys the type computes are on the
// row and in the API's view; a payload the keys cannot be computed from
// is refused like any invalid payload.
func TestFlowKeysAreStoredWithTheJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.registry.MustRegister("publish", newAccountJobs())
		job := createOn(t, x, "user-1", "42")
		require.Equal(t, models.FlowKeys{"ig:42"}, x.reload(t, job.ID).FlowKeys)
		_, _, err := x.service.Create(context.Background(), jobs.CreateRequest{UserID: "user-1", Type: "publish", Payload: json.RawMessage(`{}`)})
		var ve *jobs.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, "invalid_payload", ve.Code)
		require.Contains(t, fmt.Sprint(err), "account is required")
	})
}
