package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// batchEnv is a bundle whose Service counts its Notify calls and records
// what it publishes.
type batchEnv struct {
	*bundle
	svc       *jobs.Service
	notified  atomic.Int32
	published *fakePublisher
}

func batchSetup(t *testing.T, b testenv.Backend) *batchEnv {
	t.Helper()
	x := &batchEnv{bundle: setup(t, b), published: &fakePublisher{}}
	eng := x.engine(jobs.Config{Publisher: x.published, DisableTriggers: true})
	jobs.SetNotify(eng, func(context.Context) { x.notified.Add(1) })
	x.svc = eng.Service()
	return x
}

// fakePublisher records the delayed deliveries asked for.
type fakePublisher struct {
	mu  sync.Mutex
	ats map[int64]time.Time
}

func (p *fakePublisher) PublishAt(_ context.Context, jobID int64, at time.Time) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ats == nil {
		p.ats = map[int64]time.Time{}
	}
	p.ats[jobID] = at
	return fmt.Sprintf("msg-%d", jobID), nil
}

func (p *fakePublisher) Cancel(context.Context, string) error         { return nil }
func (p *fakePublisher) Trigger(context.Context, time.Duration) error { return nil }
func (p *fakePublisher) TriggerAt(context.Context, time.Time) error   { return nil }

func (p *fakePublisher) published() map[int64]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.ats)
}

func recordReqs(n int, f func(i int, r *jobs.CreateRequest)) []jobs.CreateRequest {
	reqs := make([]jobs.CreateRequest, n)
	for i := range reqs {
		reqs[i] = jobs.CreateRequest{UserID: "user-1", Type: "record", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
		if f != nil {
			f(i, &reqs[i])
		}
	}
	return reqs
}

func (x *batchEnv) rows(t *testing.T) int64 {
	t.Helper()
	var n int64
	require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Count(&n).Error)
	return n
}

// TestCreateManyStoresAndEnqueuesInOrder: every job is created with its
// fields, the ids follow the request order, one Notify, and the queue
// hands equal priorities out in request order.
func TestCreateManyStoresAndEnqueuesInOrder(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := batchSetup(t, b)
		const n = 40
		reqs := recordReqs(n, func(i int, r *jobs.CreateRequest) {
			if i%10 == 9 {
				r.Priority = 5 // runs before the others
			}
			r.MaxAttempts = 1 + i%3
		})
		out, err := x.svc.CreateMany(ctx, reqs)
		require.NoError(t, err)
		require.Len(t, out, n)
		for i, c := range out {
			require.True(t, c.Created, "job %d", i)
			require.Equal(t, models.StatusPending, c.Job.Status)
			if i > 0 {
				require.Greater(t, c.Job.ID, out[i-1].Job.ID, "ids follow the request order")
			}
			row := x.reload(t, c.Job.ID)
			require.Equal(t, "user-1", row.UserID)
			require.Equal(t, reqs[i].Priority, row.Priority)
			require.Equal(t, 1+i%3, row.MaxAttempts)
			require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), string(row.Payload))
			require.True(t, row.NextRunAt.Equal(t0), "due now: %v", row.NextRunAt)
		}
		require.EqualValues(t, n, x.rows(t))
		require.EqualValues(t, 1, x.notified.Load(), "one Notify for the batch")

		claimed, err := x.queue.Claim(ctx, n, time.Minute)
		require.NoError(t, err)
		var want []int64
		for _, c := range out {
			if c.Job.Priority == 5 {
				want = append(want, c.Job.ID)
			}
		}
		for _, c := range out {
			if c.Job.Priority == 0 {
				want = append(want, c.Job.ID)
			}
		}
		require.Equal(t, want, claimed, "priority first, then request order")
	})
}

// TestCreateManyInvalidJobWritesNothing: one bad job refuses the batch,
// listing every bad job by index with Create's code, and stores and
// enqueues nothing.
func TestCreateManyInvalidJobWritesNothing(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := batchSetup(t, b)
		reqs := recordReqs(5, nil)
		reqs[1].Priority = -1
		reqs[3].Type = "nope"
		reqs[4].IdempotencyKey = "ok"
		_, err := x.svc.CreateMany(ctx, reqs)
		var be *jobs.BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Items, 2)
		require.Equal(t, 1, be.Items[0].Index)
		require.Equal(t, "invalid_priority", be.Items[0].Err.Code)
		require.Equal(t, "priority", be.Items[0].Err.Fields[0].Field)
		require.Equal(t, 3, be.Items[1].Index)
		require.Equal(t, "unknown_job_type", be.Items[1].Err.Code)
		require.Contains(t, err.Error(), "job 1:")

		// The codes are those Create returns for the same job alone.
		_, _, single := x.svc.Create(ctx, reqs[1])
		var ve *jobs.ValidationError
		require.ErrorAs(t, single, &ve)
		require.Equal(t, be.Items[0].Err.Code, ve.Code)

		require.Zero(t, x.rows(t))
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Zero(t, d.Pending)
		require.Zero(t, x.notified.Load())

		// An operator cannot create a batch either.
		ops := recordReqs(2, func(_ int, r *jobs.CreateRequest) { r.UserID = jobs.Operator })
		_, err = x.svc.CreateMany(ctx, ops)
		require.ErrorIs(t, err, jobs.ErrOperatorCannotCreate)
		require.Zero(t, x.rows(t))
	})
}

// TestCreateManyLimits: an empty batch and one over MaxBatchSize are
// refused; a full batch is one call.
func TestCreateManyLimits(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := batchSetup(t, b)
		_, err := x.svc.CreateMany(ctx, nil)
		require.ErrorIs(t, err, jobs.ErrEmptyBatch)
		_, err = x.svc.CreateMany(ctx, recordReqs(jobs.MaxBatchSize+1, nil))
		require.ErrorIs(t, err, jobs.ErrBatchTooLarge)
		require.Zero(t, x.rows(t))

		out, err := x.svc.CreateMany(ctx, recordReqs(jobs.MaxBatchSize, func(i int, r *jobs.CreateRequest) {
			r.IdempotencyKey = fmt.Sprintf("k-%d", i)
		}))
		require.NoError(t, err)
		require.Len(t, out, jobs.MaxBatchSize)
		require.EqualValues(t, jobs.MaxBatchSize, x.rows(t))
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.EqualValues(t, jobs.MaxBatchSize, d.Pending)
		require.EqualValues(t, 1, x.notified.Load())
	})
}

// TestCreateManyIdempotencyKeys: a key used before returns that job; a key
// repeated in the batch is the first job carrying it; keys are per user,
// and a replayed batch creates nothing.
func TestCreateManyIdempotencyKeys(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := batchSetup(t, b)
		earlier := x.create(t, jobs.CreateRequest{IdempotencyKey: "k1"})
		reqs := recordReqs(6, nil)
		reqs[0].IdempotencyKey = "k1" // created before
		reqs[1].IdempotencyKey = "k2"
		reqs[2].IdempotencyKey = "k2" // same as job 1
		reqs[4].IdempotencyKey = "k1"
		reqs[5].IdempotencyKey, reqs[5].UserID = "k1", "user-2" // another user's key
		out, err := x.svc.CreateMany(ctx, reqs)
		require.NoError(t, err)
		created := make([]bool, len(out))
		for i, c := range out {
			created[i] = c.Created
		}
		require.Equal(t, []bool{false, true, false, true, false, true}, created)
		require.Equal(t, earlier.ID, out[0].Job.ID)
		require.Equal(t, earlier.ID, out[4].Job.ID)
		require.Equal(t, out[1].Job.ID, out[2].Job.ID)
		require.NotSame(t, out[1].Job, out[2].Job, "each entry has its own copy")
		require.NotEqual(t, earlier.ID, out[5].Job.ID)
		require.EqualValues(t, 4, x.rows(t))
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 4, d.Pending, "a job that existed is not enqueued again")

		again, err := x.svc.CreateMany(ctx, reqs)
		require.NoError(t, err)
		for i, c := range again {
			require.Equal(t, i == 3, c.Created, "job %d: only the job without a key is new", i)
			if i != 3 {
				require.Equal(t, out[i].Job.ID, c.Job.ID, "job %d", i)
			}
		}
		require.EqualValues(t, 5, x.rows(t))
	})
}

// TestCreateManyRacesSingleCreates: batches and single creates racing on
// the same keys never fail; each key ends as one job, created by exactly
// one caller, returned to every caller.
func TestCreateManyRacesSingleCreates(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := batchSetup(t, b)
		const keys, batches, singles = 20, 4, 8
		var (
			mu      sync.Mutex
			ids     = map[string]map[int64]bool{}
			created = map[string]int{}
			wg      sync.WaitGroup
			start   = make(chan struct{})
		)
		record := func(key string, id int64, ok bool) {
			mu.Lock()
			defer mu.Unlock()
			if ids[key] == nil {
				ids[key] = map[int64]bool{}
			}
			ids[key][id] = true
			if ok {
				created[key]++
			}
		}
		for g := 0; g < batches; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Each batch takes the keys in its own order, and repeats one.
				reqs := recordReqs(keys+1, func(i int, r *jobs.CreateRequest) {
					r.IdempotencyKey = fmt.Sprintf("order-%d", (i*7+g*3)%keys)
				})
				out, err := x.svc.CreateMany(ctx, reqs)
				if !assertNoErr(t, err) {
					return
				}
				for i, c := range out {
					record(reqs[i].IdempotencyKey, c.Job.ID, c.Created)
				}
			}()
		}
		for g := 0; g < singles; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for k := g; k < keys; k += 3 {
					key := fmt.Sprintf("order-%d", k)
					job, ok, err := x.svc.Create(ctx, jobs.CreateRequest{UserID: "user-1", Type: "record", IdempotencyKey: key})
					if !assertNoErr(t, err) {
						return
					}
					record(key, job.ID, ok)
				}
			}()
		}
		close(start)
		wg.Wait()
		require.Len(t, ids, keys)
		for k, set := range ids {
			require.Len(t, set, 1, "key %s is one job", k)
			require.Equal(t, 1, created[k], "key %s was created once", k)
		}
		require.EqualValues(t, keys, x.rows(t))
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.EqualValues(t, keys, d.Pending)
	})
}

// TestCreateManyScheduled: a job for later is stored scheduled, published
// and not enqueued; one for the past runs now.
func TestCreateManyScheduled(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := batchSetup(t, b)
		later, past := t0.Add(time.Hour), t0.Add(-time.Hour)
		reqs := recordReqs(3, nil)
		reqs[0].ScheduledFor = &later
		reqs[2].ScheduledFor = &past
		out, err := x.svc.CreateMany(ctx, reqs)
		require.NoError(t, err)
		require.Equal(t, models.StatusScheduled, out[0].Job.Status)
		require.Equal(t, models.StatusPending, out[1].Job.Status)
		require.Equal(t, models.StatusPending, out[2].Job.Status)
		row := x.reload(t, out[0].Job.ID)
		require.Equal(t, models.StatusScheduled, row.Status)
		require.True(t, row.NextRunAt.Equal(later))
		require.NotNil(t, row.QStashMessageID, "the delivery's message is recorded")
		require.Equal(t, map[int64]time.Time{out[0].Job.ID: later}, x.published.published())

		claimed, err := x.queue.Claim(ctx, 10, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{out[1].Job.ID, out[2].Job.ID}, claimed, "only the jobs due now are enqueued")
		require.EqualValues(t, 1, x.notified.Load())

		// A batch of scheduled jobs only enqueues nothing and notifies no one.
		_, err = x.svc.CreateMany(ctx, recordReqs(2, func(_ int, r *jobs.CreateRequest) { r.ScheduledFor = &later }))
		require.NoError(t, err)
		require.EqualValues(t, 1, x.notified.Load())
	})
}

// TestCreateManySealsSecretsPerJob: each job's secret fields are sealed
// at rest, every entry comes back redacted, and a refused job's error is
// scrubbed of its tokens.
func TestCreateManySealsSecretsPerJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		svc := x.service(keyring(t, secKeyA))
		reqs := []jobs.CreateRequest{
			{UserID: "user-1", Type: "social", Payload: newSecretPayload(), IdempotencyKey: "p"},
			{UserID: "user-1", Type: "record"},
			{UserID: "user-1", Type: "social", Payload: newSecretPayload()},
			{UserID: "user-1", Type: "social", Payload: newSecretPayload(), IdempotencyKey: "p"},
		}
		out, err := svc.CreateMany(ctx, reqs)
		require.NoError(t, err)
		for _, i := range []int{0, 2, 3} {
			requireRedacted(t, fmt.Sprintf("CreateMany job %d", i), out[i].Job)
		}
		sealed := map[string]bool{}
		for _, i := range []int{0, 2} {
			raw := rawPayload(t, b, out[i].Job.ID)
			requireNoTokens(t, "the payload column", raw)
			for _, target := range []int{-1, 0, 1} {
				s := sealedAt(t, raw, target)
				require.True(t, strings.HasPrefix(s, "v1.a."), raw)
				require.False(t, sealed[s], "each value is sealed on its own")
				sealed[s] = true
			}
		}

		// The handler gets the plaintext of each.
		w := x.secretWorker(keyring(t, secKeyA))
		_, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		seen := x.h.payloads()
		require.Len(t, seen, 2)
		for _, p := range seen {
			requireHandlerGotPlaintext(t, p)
		}

		// A refused job's message is scrubbed; nothing of the batch is stored.
		var before int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&before).Error)
		bad := json.RawMessage(strings.Replace(string(newSecretPayload()), "hello <world>", "reject", 1))
		_, err = svc.CreateMany(ctx, []jobs.CreateRequest{
			{UserID: "user-1", Type: "social", Payload: newSecretPayload()},
			{UserID: "user-1", Type: "social", Payload: bad},
		})
		var be *jobs.BatchError
		require.ErrorAs(t, err, &be)
		require.Len(t, be.Items, 1)
		require.Equal(t, 1, be.Items[0].Index)
		requireNoTokens(t, "the batch error", err.Error())
		var after int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&after).Error)
		require.Equal(t, before, after)

		// Without a keyring, a batch with secret fields is refused whole.
		_, err = x.service(nil).CreateMany(ctx, reqs[1:3])
		require.True(t, errors.Is(err, jobs.ErrSecretsUnconfigured), "%v", err)
	})
}
