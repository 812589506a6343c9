package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// provider is a fake irreversible API for the Effect tests: it counts
// what it created, and can lose its answer after creating.
type provider struct {
	mu      sync.Mutex
	created []string
	// loseAnswer makes the next call create and then fail as if the
	// answer was lost.
	loseAnswer bool
	checks     []jobs.EffectIntent
	// checkErr, when set, is what the next check returns.
	checkErr error
}

func (p *provider) do(context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := fmt.Sprintf("post-%d", len(p.created)+1)
	p.created = append(p.created, id)
	if p.loseAnswer {
		p.loseAnswer = false
		return "", errors.New("connection reset after the request was sent")
	}
	return id, nil
}

func (p *provider) check(_ context.Context, in jobs.EffectIntent) (string, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.checks = append(p.checks, in)
	if err := p.checkErr; err != nil {
		p.checkErr = nil
		return "", false, err
	}
	if len(p.created) == 0 {
		return "", false, nil
	}
	return p.created[len(p.created)-1], true, nil
}

func (p *provider) counts() (created, checks int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.created), len(p.checks)
}

// effectJob registers a type whose handler runs one Effect and returns
// its outcome; after, when set, runs once the Effect returned (to fail the
// attempt afterwards).
func effectJob(x *bundle, typ string, p *provider, after func(job *models.Job) error) {
	x.registry.MustRegister(typ, jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
		out, err := jobs.Effect(ctx, "publish", "target-1", p.do, p.check)
		if err != nil {
			return nil, err
		}
		if after != nil {
			if err := after(job); err != nil {
				return nil, err
			}
		}
		return json.Marshal(map[string]string{"id": out.ProviderID, "source": string(out.Source)})
	}))
}

func drainOnce(t *testing.T, x *bundle, w *jobs.Worker) {
	t.Helper()
	_, err := w.Drain(context.Background(), time.Minute)
	require.NoError(t, err)
	x.clock.Advance(time.Hour) // past any backoff
}

func requireResult(t *testing.T, x *bundle, id int64, want string) models.Job {
	t.Helper()
	row := x.reload(t, id)
	require.Equal(t, models.StatusCompleted, row.Status, "error %q", row.Error)
	require.JSONEq(t, want, string(row.Result))
	return row
}

func TestEffectDoneStepIsNotRedone(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		p := &provider{}
		// The first attempt fails after its effect was recorded, as if its
		// outcome write was lost.
		effectJob(x, "fx", p, func(job *models.Job) error {
			if job.Attempts == 1 {
				return errors.New("failed after the effect")
			}
			return nil
		})
		job := x.create(t, jobs.CreateRequest{Type: "fx", MaxAttempts: 3})
		w := x.worker(jobs.Config{})
		drainOnce(t, x, w)
		require.Equal(t, models.StatusPending, x.reload(t, job.ID).Status)
		drainOnce(t, x, w)
		requireResult(t, x, job.ID, `{"id":"post-1","source":"recorded"}`)
		created, checks := p.counts()
		require.Equal(t, 1, created, "do ran once")
		require.Zero(t, checks, "a recorded id needs no check")
	})
}

func TestEffectUnknownOutcomeIsChecked(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		t.Run("found: adopted", func(t *testing.T) {
			x := setup(t, b)
			p := &provider{loseAnswer: true}
			effectJob(x, "fx", p, nil)
			before := x.clock.Now()
			job := x.create(t, jobs.CreateRequest{Type: "fx", MaxAttempts: 3})
			w := x.worker(jobs.Config{})
			drainOnce(t, x, w)
			row := x.reload(t, job.ID)
			require.Equal(t, models.StatusPending, row.Status)
			require.Contains(t, row.Error, "connection reset")
			drainOnce(t, x, w)
			requireResult(t, x, job.ID, `{"id":"post-1","source":"adopted"}`)
			created, checks := p.counts()
			require.Equal(t, 1, created, "do was not called again")
			require.Equal(t, 1, checks)
			in := p.checks[0]
			require.Equal(t, job.ID, in.JobID)
			require.Equal(t, "publish", in.Name)
			require.Equal(t, "target-1", in.Key)
			require.Equal(t, 1, in.Attempt, "the attempt that recorded the intent")
			require.WithinDuration(t, before, in.At, time.Second, "the intent's time")
		})
		t.Run("not found: run again", func(t *testing.T) {
			x := setup(t, b)
			p := &provider{}
			// do fails before creating anything (its error leaves the
			// intent): the check finds nothing and do runs again.
			calls := 0
			x.registry.MustRegister("fx", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
				out, err := jobs.Effect(ctx, "publish", "target-1", func(ctx context.Context) (string, error) {
					calls++
					if calls == 1 {
						return "", errors.New("refused")
					}
					return p.do(ctx)
				}, p.check)
				if err != nil {
					return nil, err
				}
				return json.Marshal(map[string]string{"id": out.ProviderID, "source": string(out.Source)})
			}))
			job := x.create(t, jobs.CreateRequest{Type: "fx", MaxAttempts: 3})
			w := x.worker(jobs.Config{})
			drainOnce(t, x, w)
			drainOnce(t, x, w)
			requireResult(t, x, job.ID, `{"id":"post-1","source":"ran"}`)
			created, checks := p.counts()
			require.Equal(t, 1, created)
			require.Equal(t, 1, checks)
			require.Equal(t, 2, calls)
		})
	})
}

// checkFails runs a job whose first attempt lost the answer of its step,
// and whose second attempt's check fails with checkErr.
func checkFails(t *testing.T, b testenv.Backend, checkErr error) (*bundle, *provider, *jobs.Worker, models.Job) {
	t.Helper()
	x := setup(t, b)
	p := &provider{loseAnswer: true}
	effectJob(x, "fx", p, nil)
	job := x.create(t, jobs.CreateRequest{Type: "fx", MaxAttempts: 3})
	w := x.worker(jobs.Config{})
	drainOnce(t, x, w)
	p.mu.Lock()
	p.checkErr = checkErr
	p.mu.Unlock()
	drainOnce(t, x, w)
	return x, p, w, x.reload(t, job.ID)
}

// A check that cannot tell is an error: the job retries (the attempt
// counts), do is not called; the next check decides.
func TestEffectCheckErrorRetries(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x, p, w, row := checkFails(t, b, errors.New("provider unavailable"))
		require.Equal(t, models.StatusPending, row.Status)
		require.Equal(t, 2, row.Attempts)
		require.Contains(t, row.Error, "check: provider unavailable")
		created, _ := p.counts()
		require.Equal(t, 1, created, "not redone on a failed check")
		drainOnce(t, x, w)
		requireResult(t, x, row.ID, `{"id":"post-1","source":"adopted"}`)
		created, checks := p.counts()
		require.Equal(t, 1, created)
		require.Equal(t, 2, checks)
	})
}

// A check's Permanent error fails the job, its class kept.
func TestEffectCheckPermanentErrorFails(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		_, p, _, row := checkFails(t, b, jobs.Permanent(errors.New("token revoked")))
		require.Equal(t, models.StatusFailed, row.Status)
		require.Contains(t, row.Error, "token revoked")
		created, _ := p.counts()
		require.Equal(t, 1, created)
	})
}

// A worker that lost its lease records nothing: not the intent (and do is
// not called), not the id.
func TestEffectFencedByTheLease(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		steal := func(t *testing.T, id int64) {
			require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", id).Update("lease_id", "newer-claim").Error)
		}
		t.Run("before the intent", func(t *testing.T) {
			x := setup(t, b)
			p := &provider{}
			var got error
			x.registry.MustRegister("fx", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
				steal(t, job.ID)
				_, got = jobs.Effect(ctx, "publish", "target-1", p.do, p.check)
				return nil, got
			}))
			job := x.create(t, jobs.CreateRequest{Type: "fx"})
			_, err := x.worker(jobs.Config{LeaseDuration: time.Hour}).Drain(ctx, time.Minute)
			require.NoError(t, err)
			require.ErrorIs(t, got, jobs.ErrLeaseLost)
			created, _ := p.counts()
			require.Zero(t, created, "do is not called without the lease")
			var n int64
			require.NoError(t, b.DB.Gorm.Table("job_effects").Where("job_id = ?", job.ID).Count(&n).Error)
			require.Zero(t, n)
		})
		t.Run("after do", func(t *testing.T) {
			x := setup(t, b)
			p := &provider{}
			var got error
			x.registry.MustRegister("fx", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
				_, got = jobs.Effect(ctx, "publish", "target-1", func(ctx context.Context) (string, error) {
					steal(t, job.ID)
					return p.do(ctx)
				}, p.check)
				return nil, got
			}))
			job := x.create(t, jobs.CreateRequest{Type: "fx"})
			_, err := x.worker(jobs.Config{LeaseDuration: time.Hour}).Drain(ctx, time.Minute)
			require.NoError(t, err)
			require.ErrorIs(t, got, jobs.ErrLeaseLost)
			var rows []struct {
				Status     string
				ProviderID *string
			}
			require.NoError(t, b.DB.Gorm.Table("job_effects").Where("job_id = ?", job.ID).Find(&rows).Error)
			require.Len(t, rows, 1)
			require.Equal(t, "intent", rows[0].Status, "the stale worker did not record the id")
			require.Nil(t, rows[0].ProviderID)
		})
	})
}

func TestEffectOutsideAHandler(t *testing.T) {
	p := &provider{}
	_, err := jobs.Effect(context.Background(), "publish", "k", p.do, p.check)
	require.ErrorIs(t, err, jobs.ErrNoJob)
	created, _ := p.counts()
	require.Zero(t, created)
}

// The effects of a job go with it.
func TestEffectRowsGoWithTheirJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		p := &provider{}
		effectJob(x, "fx", p, nil)
		job := x.create(t, jobs.CreateRequest{Type: "fx"})
		drainOnce(t, x, x.worker(jobs.Config{}))
		count := func() int64 {
			var n int64
			require.NoError(t, b.DB.Gorm.Table("job_effects").Where("job_id = ?", job.ID).Count(&n).Error)
			return n
		}
		require.EqualValues(t, 1, count())
		require.NoError(t, b.DB.Gorm.Exec("DELETE FROM jobs WHERE id = ?", job.ID).Error)
		require.Zero(t, count())
	})
}

// A check is told the ids other jobs recorded for a step of the same name,
// so that it does not adopt another job's post of the same text.
func TestEffectCheckIsToldTheIDsOtherJobsTook(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		p := &provider{}
		effectJob(x, "fx", p, nil)
		w := x.worker(jobs.Config{})
		first := x.create(t, jobs.CreateRequest{Type: "fx"})
		drainOnce(t, x, w)
		requireResult(t, x, first.ID, `{"id":"post-1","source":"ran"}`)
		p.mu.Lock()
		p.loseAnswer = true
		p.mu.Unlock()
		second := x.create(t, jobs.CreateRequest{Type: "fx", MaxAttempts: 3})
		drainOnce(t, x, w)
		drainOnce(t, x, w)
		requireResult(t, x, second.ID, `{"id":"post-2","source":"adopted"}`)
		require.Len(t, p.checks, 1)
		require.Equal(t, map[string]bool{"post-1": true}, p.checks[0].Taken)
	})
}
